"""The provider health check: what a provider answers on its `.health` subject, and how a host reads it.

wasmCloud 0.x's HealthCheckResponse is `{healthy: bool, message: str}`, and 0.x hosts read only
those two, so both stay. A sentence is for people, though: a reader that needs to know which of a
provider's models are ready had to parse it back, and got it wrong whenever the sentence grew. Waft
adds `details`, a map a provider fills with what it can say as fields (the mlinference provider:
`details.models`, a list of `waft.interfaces.mlinference.ModelStatus` maps; the SDK: `linkErrors`,
actor -> why its link was refused). It is left off the wire when empty, so a provider with nothing
to add answers exactly what 0.x did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from waft.lattice.codec import DecodeError, pack, unpack_map


@dataclass(frozen=True)
class HealthCheckResponse:
    healthy: bool
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"healthy": self.healthy, "message": self.message}
        if self.details:
            wire["details"] = self.details
        return wire

    def encode(self) -> bytes:
        return pack(self.to_wire())

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> HealthCheckResponse:
        details = wire.get("details")
        return cls(bool(wire.get("healthy")), str(wire.get("message") or ""),
                   dict(details) if isinstance(details, Mapping) else {})

    @classmethod
    def decode(cls, data: bytes) -> HealthCheckResponse:
        """Never raises: an answer that cannot be read is an unhealthy provider, and says why."""
        try:
            return cls.from_wire(unpack_map(data, what="health response"))
        except DecodeError as exc:
            return cls(False, str(exc))

    @classmethod
    def of(cls, answer: HealthCheckResponse | tuple[bool, str]) -> HealthCheckResponse:
        """What a provider's `health()` returned, in either form the SDK accepts."""
        if isinstance(answer, HealthCheckResponse):
            return answer
        healthy, message = answer
        return cls(bool(healthy), str(message))
