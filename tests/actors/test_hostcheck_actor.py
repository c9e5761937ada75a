"""The host's sandbox guarantees and the SDK's host-call paths, driven by the hostcheck test actor."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import msgpack
import pytest
import wasmtime
from actor_support import build_all, compiled

from waft.claims import ClaimsError, inspect_actor
from waft.host.wapc import ActorTrap, GuestError, HostCallError, Limits, WapcInstance, WapcModule

MIB = 1024 * 1024


@pytest.fixture()
def hostcheck_module() -> WapcModule:
    return compiled("hostcheck")


@pytest.fixture()
def built() -> dict[str, tuple[Path, Path]]:
    return build_all()


class RecordingHost:
    """A host_call that records every call and answers from a script, like the real host's router."""

    def __init__(self, answer: bytes = b"", error: str | None = None, kind: str = "failed") -> None:
        self.calls: list[tuple[str, str, str, bytes]] = []
        self.answer = answer
        self.error = error
        self.kind = kind

    def __call__(self, binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
        self.calls.append((binding, namespace, operation, payload))
        if self.error is not None:
            raise HostCallError(self.error, kind=self.kind)
        return self.answer


def make(module: WapcModule, host: RecordingHost | None = None, *, memory_mib: int = 64,
         deadline_ms: int = 5000, log: list[str] | None = None) -> WapcInstance:
    return module.instantiate(host or RecordingHost(), Limits(memory_bytes=memory_mib * MIB, deadline_ms=deadline_ms),
                              log=log.append if log is not None else None)


@pytest.mark.parametrize("payload", [b"", b"\x00", b"hello", bytes(range(256)) * 4096], ids=["0", "1", "5", "1MiB"])
def test_echo(hostcheck_module: WapcModule, payload: bytes) -> None:
    assert make(hostcheck_module).call("Test.Echo", payload) == payload


def test_loop_is_stopped_by_the_deadline(hostcheck_module: WapcModule) -> None:
    instance = make(hostcheck_module, deadline_ms=200)
    start = time.monotonic()
    with pytest.raises(ActorTrap) as info:
        instance.call("Test.Loop", b"")
    elapsed = time.monotonic() - start
    assert info.value.deadline is True
    assert 0.15 < elapsed < 3, elapsed
    with pytest.raises(ActorTrap, match="discarded"):
        instance.call("Test.Echo", b"x")
    assert make(hostcheck_module).call("Test.Echo", b"fresh") == b"fresh"


def test_trap_spends_the_instance_only(hostcheck_module: WapcModule) -> None:
    instance = make(hostcheck_module)
    neighbour = make(hostcheck_module)
    with pytest.raises(ActorTrap) as info:
        instance.call("Test.Trap", b"")
    assert info.value.deadline is False
    with pytest.raises(ActorTrap):
        instance.call("Test.Echo", b"x")
    assert neighbour.call("Test.Echo", b"y") == b"y"


def _mib(n: int) -> bytes:
    return struct.pack("<I", n)


def test_alloc_within_the_cap_succeeds_repeatedly(hostcheck_module: WapcModule) -> None:
    instance = make(hostcheck_module, memory_mib=32)
    for _ in range(20):  # freed each time, so repeated calls must not exhaust the cap
        assert instance.call("Test.Alloc", _mib(8)) == b"ok"


def test_alloc_past_the_memory_cap_fails_alone(hostcheck_module: WapcModule) -> None:
    instance = make(hostcheck_module, memory_mib=16)
    assert instance.call("Test.Alloc", _mib(4)) == b"ok"
    try:
        instance.call("Test.Alloc", _mib(64))
    except GuestError as exc:
        assert str(exc) == "alloc failed"
        # malloc returned NULL cleanly: the same instance is still good for what fits
        assert instance.call("Test.Alloc", _mib(4)) == b"ok"
    except ActorTrap:
        pass
    else:
        pytest.fail("a 64 MiB allocation succeeded under a 16 MiB cap")
    assert make(hostcheck_module, memory_mib=16).call("Test.Echo", b"fresh") == b"fresh"


def test_alloc_without_a_count_is_a_guest_error(hostcheck_module: WapcModule) -> None:
    with pytest.raises(GuestError, match="u32 LE"):
        make(hostcheck_module).call("Test.Alloc", b"\x01")


def _call_request(binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
    return msgpack.packb({"binding": binding, "namespace": namespace, "operation": operation, "payload": payload})


def test_call_round_trips_through_host_call(hostcheck_module: WapcModule) -> None:
    answer = bytes(range(256)) * 400
    host = RecordingHost(answer=answer)
    instance = make(hostcheck_module, host)
    payload = b"\x00\x01 binary \xff" * 1000
    assert instance.call("Test.Call", _call_request("default", "wasmcloud:mlinference", "MlInference.Predict",
                                                    payload)) == answer
    assert host.calls == [("default", "wasmcloud:mlinference", "MlInference.Predict", payload)]


def test_call_with_empty_answer_and_actor_to_actor_binding(hostcheck_module: WapcModule) -> None:
    host = RecordingHost(answer=b"")
    instance = make(hostcheck_module, host)
    assert instance.call("Test.Call", _call_request("", "waft/echo", "Actor.HealthRequest", b"")) == b""
    assert host.calls == [("", "waft/echo", "Actor.HealthRequest", b"")]


def test_call_reports_host_errors(hostcheck_module: WapcModule) -> None:
    """The guest reads "<kind>: <message>" from __host_error: the kind is machine-readable."""
    text = "Invocation not authorized: missing link definition for waft:test on default"
    instance = make(hostcheck_module, RecordingHost(error=text, kind="not_linked"))
    with pytest.raises(GuestError) as info:
        instance.call("Test.Call", _call_request("default", "waft:test", "Test.Op", b"x"))
    assert str(info.value) == f"host error: not_linked: {text}"
    assert instance.call("Test.Echo", b"after") == b"after"
    with pytest.raises(GuestError) as info:
        make(hostcheck_module, RecordingHost(error="no")).call("Test.Call", _call_request("", "x", "y", b""))
    assert str(info.value) == "host error: failed: no"  # the default kind
    with pytest.raises(ValueError, match="unknown host error kind"):
        HostCallError("x", kind="sad")


def test_call_with_malformed_request_is_a_guest_error(hostcheck_module: WapcModule) -> None:
    host = RecordingHost()
    with pytest.raises(GuestError, match=r"invalid Test\.Call request"):
        make(hostcheck_module, host).call("Test.Call", b"\x81\xa7binding\x05")
    assert host.calls == []


def test_log_reaches_the_builtin_logging_capability(hostcheck_module: WapcModule) -> None:
    host = RecordingHost()
    console: list[str] = []
    instance = make(hostcheck_module, host, log=console)
    text = "hello from the guest ✓"
    assert instance.call("Test.Log", text.encode()) == b"logged"
    assert len(host.calls) == 1
    binding, namespace, operation, payload = host.calls[0]
    assert (namespace, operation) == ("wasmcloud:builtin:logging", "Logging.WriteLog")
    assert binding == "default"
    assert msgpack.unpackb(payload) == {"level": "info", "text": text}
    assert console == [text]


def test_log_refused_by_the_host_is_reported(hostcheck_module: WapcModule) -> None:
    instance = make(hostcheck_module, RecordingHost(error="missing capability claim"))
    with pytest.raises(GuestError, match=r"^log failed$"):
        instance.call("Test.Log", b"x")


def test_http_and_unknown_operation(hostcheck_module: WapcModule) -> None:
    instance = make(hostcheck_module)
    resp = msgpack.unpackb(instance.call("HttpServer.HandleRequest", msgpack.packb({"path": "/"})))
    assert resp == {"statusCode": 200, "header": {"content-type": ["text/plain"]}, "body": b"hostcheck"}
    with pytest.raises(GuestError, match=r"^No handler registered for function Test\.Nope$"):
        instance.call("Test.Nope", b"")


def test_module_shape(built: dict[str, tuple[Path, Path]]) -> None:
    """Only `wapc` imports (no WASI: reactor model), the init export, and a small initial memory
    (the 64 KiB stack flag), so small memory caps can instantiate at all."""
    engine = wasmtime.Engine()
    for name in ("echo", "hostcheck"):
        module = wasmtime.Module(engine, built[name][0].read_bytes())
        assert {imp.module for imp in module.imports} == {"wapc"}
        exports = {exp.name: exp.type for exp in module.exports}
        assert {"memory", "_initialize", "__guest_call", "wapc_init"} <= set(exports)
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.MemoryType) and memory.limits.min <= 4


def test_small_memory_cap_instantiates(hostcheck_module: WapcModule) -> None:
    assert make(hostcheck_module, memory_mib=1).call("Test.Echo", b"tiny") == b"tiny"


def test_signed_and_unsigned_copies(built: dict[str, tuple[Path, Path]]) -> None:
    unsigned, signed = built["hostcheck"]
    claims = inspect_actor(signed.read_bytes())
    assert claims.name == "hostcheck"
    assert set(claims.caps) == {"wasmcloud:httpserver", "wasmcloud:builtin:logging",
                                "wasmcloud:builtin:numbergen", "waft:test"}
    assert claims.call_alias == "waft/hostcheck"
    with pytest.raises(ClaimsError):
        inspect_actor(unsigned.read_bytes())


def test_host_call_bug_spends_the_instance(hostcheck_module: WapcModule) -> None:
    """A host_call raising anything but HostCallError unwinds the guest mid-call: the caller gets an
    ActorTrap (not the raw exception) and the instance is retired like after a trap."""

    def broken(binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
        raise RuntimeError("router bug")

    instance = hostcheck_module.instantiate(broken)
    with pytest.raises(ActorTrap, match="RuntimeError: router bug") as info:
        instance.call("Test.Call", _call_request("", "x", "y", b""))
    assert info.value.deadline is False
    with pytest.raises(ActorTrap, match="discarded"):
        instance.call("Test.Echo", b"x")


def test_sdk_self_check(hostcheck_module: WapcModule) -> None:
    """base64 decode, shortest float printing and msgpack integer edges, checked inside the guest."""
    b64_line, json_line, ints = make(hostcheck_module).call("Test.SdkSelfCheck", b"").decode().split("\n")
    # decoded then re-encoded: padding restored, invalid length and alphabet refused
    assert b64_line == " Zg== Zm8= Zm9v Zm9vYg== AP8A bad bad "
    assert json_line == "[0.71,1e-07,0.1,0.3333333333333333,-9223372036854775808,18446744073709551615,null,false,null]"
    assert json.loads(json_line)[:4] == [0.71, 1e-07, 0.1, 1 / 3]
    assert ints == "." * 16
