"""The lattice's wire structs: WasmCloudEntity, Invocation, InvocationResponse, LinkDefinition.

Field names and shapes follow wasmCloud 0.x (`rmp_serde::to_vec_named`, wasmcloud-protocol §2.1, §3).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from waft.lattice.codec import DecodeError, as_bytes, as_str, pack, unpack_map


@dataclass(frozen=True)
class WasmCloudEntity:
    public_key: str
    link_name: str = ""
    contract_id: str = ""

    @classmethod
    def actor(cls, public_key: str) -> WasmCloudEntity:
        return cls(public_key)

    @classmethod
    def provider(cls, public_key: str, contract_id: str, link_name: str) -> WasmCloudEntity:
        return cls(public_key, link_name, contract_id)

    @property
    def is_actor(self) -> bool:
        return not self.link_name and not self.contract_id

    def url(self) -> str:
        """The URL that goes into an invocation's anti-forgery hash (§2.1)."""
        if self.public_key.upper().startswith("M"):
            return f"wasmbus://{self.public_key}"
        contract = self.contract_id.replace(":", "/").replace(" ", "_").lower()
        link = self.link_name.replace(" ", "_").lower()
        return f"wasmbus://{contract}/{link}/{self.public_key}"

    def to_wire(self) -> dict[str, str]:
        return {"public_key": self.public_key, "link_name": self.link_name, "contract_id": self.contract_id}

    @classmethod
    def from_wire(cls, value: Any, *, field_name: str) -> WasmCloudEntity:
        if not isinstance(value, dict):
            raise DecodeError(f"invocation field {field_name!r} must be a map")
        return cls(as_str(value.get("public_key"), field="public_key"),
                   as_str(value.get("link_name"), field="link_name"),
                   as_str(value.get("contract_id"), field="contract_id"))


def invocation_hash(origin_url: str, target_url: str, operation: str, msg: bytes) -> str:
    """Uppercase hex SHA-256 of origin_url ‖ target_url ‖ operation ‖ msg (§2.3)."""
    digest = hashlib.sha256()
    for part in (origin_url.encode(), target_url.encode(), operation.encode(), msg):
        digest.update(part)
    return digest.hexdigest().upper()


@dataclass
class Invocation:
    origin: WasmCloudEntity
    target: WasmCloudEntity
    operation: str
    msg: bytes
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    encoded_claims: str = ""
    host_id: str = ""
    content_length: int | None = None
    trace_context: dict[str, str] | None = None

    @property
    def origin_url(self) -> str:
        return self.origin.url()

    @property
    def target_url(self) -> str:
        return f"{self.target.url()}/{self.operation}"

    @property
    def is_chunked(self) -> bool:
        return self.content_length is not None and self.content_length > len(self.msg)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "origin": self.origin.to_wire(), "target": self.target.to_wire(), "operation": self.operation,
            "msg": self.msg, "id": self.id, "encoded_claims": self.encoded_claims, "host_id": self.host_id,
        }
        if self.content_length is not None:
            wire["content_length"] = self.content_length
        if self.trace_context:
            wire["traceContext"] = self.trace_context
        return wire

    def encode(self) -> bytes:
        return pack(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> Invocation:
        wire = unpack_map(data, what="invocation")
        for key in ("origin", "target", "operation", "id"):
            if key not in wire:
                raise DecodeError(f"invocation is missing {key!r}")
        content_length = wire.get("content_length")
        if content_length is not None and (not isinstance(content_length, int) or content_length < 0):
            raise DecodeError("invocation content_length must be a non-negative integer")
        trace = wire.get("traceContext")
        return cls(
            origin=WasmCloudEntity.from_wire(wire["origin"], field_name="origin"),
            target=WasmCloudEntity.from_wire(wire["target"], field_name="target"),
            operation=as_str(wire["operation"], field="operation"),
            msg=as_bytes(wire.get("msg"), field="msg"),
            id=as_str(wire["id"], field="id"),
            encoded_claims=as_str(wire.get("encoded_claims"), field="encoded_claims"),
            host_id=as_str(wire.get("host_id"), field="host_id"),
            content_length=content_length,
            trace_context=trace if isinstance(trace, dict) else None,
        )


@dataclass
class InvocationResponse:
    invocation_id: str
    msg: bytes = b""
    error: str | None = None
    content_length: int | None = None
    instance_id: str | None = None
    #: Waft's addition: what kind of failure `error` is (waft.host.wapc.HOST_ERROR_KINDS); 0.x hosts ignore it.
    error_kind: str | None = None

    @property
    def is_chunked(self) -> bool:
        return self.content_length is not None and self.content_length > len(self.msg)

    def encode(self) -> bytes:
        wire: dict[str, Any] = {"msg": self.msg, "invocation_id": self.invocation_id}
        if self.error is not None:
            wire["error"] = self.error
        if self.content_length is not None:
            wire["content_length"] = self.content_length
        if self.instance_id is not None:
            wire["instance_id"] = self.instance_id
        if self.error_kind is not None:
            wire["error_kind"] = self.error_kind
        return pack(wire)

    @classmethod
    def decode(cls, data: bytes) -> InvocationResponse:
        wire = unpack_map(data, what="invocation response")
        error = wire.get("error")
        content_length = wire.get("content_length")
        if content_length is not None and not isinstance(content_length, int):
            raise DecodeError("invocation response content_length must be an integer")
        return cls(
            invocation_id=as_str(wire.get("invocation_id"), field="invocation_id"),
            msg=as_bytes(wire.get("msg"), field="msg"),
            error=as_str(error, field="error") if error not in (None, "") else None,
            content_length=content_length,
            instance_id=as_str(wire.get("instance_id"), field="instance_id") or None,
            error_kind=as_str(wire.get("error_kind"), field="error_kind") or None,
        )


@dataclass
class LinkDefinition:
    actor_id: str
    provider_id: str
    contract_id: str
    link_name: str = "default"
    values: dict[str, str] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def key(self) -> tuple[str, str, str]:
        """One provider per (actor, contract, link name): a re-put replaces (§3)."""
        return (self.actor_id, self.contract_id, self.link_name)

    def to_wire(self, *, with_id: bool = True) -> dict[str, Any]:
        wire: dict[str, Any] = {"actor_id": self.actor_id, "provider_id": self.provider_id,
                                "link_name": self.link_name, "contract_id": self.contract_id,
                                "values": dict(self.values)}
        if with_id:
            wire["id"] = self.id
        return wire

    def encode(self) -> bytes:
        return pack(self.to_wire())

    @classmethod
    def from_wire(cls, wire: Any) -> LinkDefinition:
        if not isinstance(wire, dict):
            raise DecodeError("a link definition must be a map")
        missing = [k for k in ("actor_id", "provider_id", "contract_id") if not wire.get(k)]
        if missing:
            raise DecodeError(f"link definition is missing {', '.join(missing)}")
        values = wire.get("values") or {}
        if not isinstance(values, dict):
            raise DecodeError("link definition values must be a map of strings")
        return cls(
            actor_id=as_str(wire["actor_id"], field="actor_id"),
            provider_id=as_str(wire["provider_id"], field="provider_id"),
            contract_id=as_str(wire["contract_id"], field="contract_id"),
            link_name=as_str(wire.get("link_name"), field="link_name", default="default") or "default",
            values={str(k): str(v) for k, v in values.items()},
            id=as_str(wire.get("id"), field="id") or str(uuid.uuid4()),
        )

    @classmethod
    def decode(cls, data: bytes) -> LinkDefinition:
        return cls.from_wire(unpack_map(data, what="link definition"))
