"""Host-call failures carry a machine-readable kind (waft.host.wapc.HOST_ERROR_KINDS): where routing raises
them, and how a failure (local or from across the lattice) is classified. The guest side is in
tests/actors/test_hostcheck_actor.py and tests/api/test_api_actor.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from waft.host.routing import HostCallRouter, failure_kind
from waft.host.wapc import HOST_ERROR_KINDS, ActorTrap, GuestError, HostCallError
from waft.lattice.rpc import RpcError
from waft.lattice.types import LinkDefinition

ACTOR = "M" + "A" * 55
PROVIDER = "V" + "B" * 55


class Links:
    def __init__(self, links: dict[tuple[str, str, str], LinkDefinition]) -> None:
        self.links = links

    def find_alias(self, alias: str) -> str | None:
        return None


def router(links: dict[tuple[str, str, str], LinkDefinition] | None = None) -> HostCallRouter:
    none = cast(Any, None)
    return HostCallRouter(none, "default", none, Links(links or {}), {}, none, wait_s=1, spawn=none)


def pool(*caps: str) -> Any:
    return SimpleNamespace(public_key=ACTOR, claims=SimpleNamespace(caps=list(caps), name="a"))


@pytest.mark.parametrize("caps, namespace, links, kind", [
    ((), "wasmcloud:builtin:logging", False, "denied"),
    ((), "wasmcloud:mlinference", True, "denied"),
    ((), "wasmcloud:mlinference", False, "denied"),
    (("wasmcloud:mlinference",), "wasmcloud:mlinference", False, "not_linked"),
    ((), "waft/nosuch", False, "not_running"),
])
def test_routing_raises_each_kind(caps: tuple[str, ...], namespace: str, links: bool, kind: str) -> None:
    table = {(ACTOR, namespace, "default"): LinkDefinition(ACTOR, PROVIDER, namespace, "default", {})} if links else {}
    with pytest.raises(HostCallError) as info:
        router(table).resolve(pool(*caps), "", namespace)
    assert info.value.kind == kind


@pytest.mark.parametrize("exc, kind", [
    (TimeoutError(), "timeout"),
    (ActorTrap("actor ran past its 10 ms deadline", deadline=True), "timeout"),
    (ActorTrap("actor trapped: unreachable"), "failed"),
    (GuestError("request timeout, said the guest"), "failed"),  # the text never decides
    (RpcError("slow", timeout=True), "timeout"),
    (RpcError("nobody", no_responders=True), "not_running"),
    (RpcError("actor M is not running here", kind="not_running"), "not_running"),  # the responder's kind
    (RpcError("from a newer host", kind="bewildered"), "failed"),
    (HostCallError("no claim", kind="denied"), "denied"),
    (RuntimeError("bug"), "failed"),
])
def test_failure_kind(exc: BaseException, kind: str) -> None:
    assert failure_kind(exc) == kind and kind in HOST_ERROR_KINDS
