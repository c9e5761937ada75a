"""HostData: what a host tells a provider it starts, as one base64 JSON line on stdin (§4.2)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from waft.errors import WaftError
from waft.lattice.types import LinkDefinition


class HostDataError(WaftError, ValueError):
    """stdin did not carry a usable HostData line."""


@dataclass
class HostData:
    host_id: str
    lattice_rpc_prefix: str
    link_name: str
    lattice_rpc_url: str
    provider_key: str
    invocation_seed: str
    cluster_issuers: list[str]
    instance_id: str = ""
    link_definitions: list[LinkDefinition] = field(default_factory=list)
    config_json: str = ""
    default_rpc_timeout_ms: int = 2000
    env_values: dict[str, str] = field(default_factory=dict)
    lattice_rpc_user_jwt: str = ""
    lattice_rpc_user_seed: str = ""
    lattice_rpc_tls: int = 0
    js_domain: str | None = None
    enable_structured_logging: bool = False

    def to_json(self) -> dict[str, Any]:
        data = {key: value for key, value in self.__dict__.items() if key != "link_definitions"}
        data["link_definitions"] = [link.to_wire(with_id=False) for link in self.link_definitions]
        return data

    def encode_line(self) -> bytes:
        return base64.b64encode(json.dumps(self.to_json()).encode()) + b"\n"

    @property
    def nats_url(self) -> str:
        """wasmCloud sends `host:port` with no scheme; nats-py needs one."""
        url = self.lattice_rpc_url
        return url if "://" in url else f"nats://{url}"

    @classmethod
    def decode_line(cls, line: bytes | str) -> HostData:
        text = line.strip()
        if not text:
            raise HostDataError("no host data on stdin: a provider is started by a Waft or wasmCloud host")
        try:
            data = json.loads(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise HostDataError(f"host data is not base64 JSON: {exc}") from None
        if not isinstance(data, dict):
            raise HostDataError("host data must be a JSON object")
        required = ("host_id", "lattice_rpc_prefix", "link_name", "lattice_rpc_url", "provider_key")
        missing = [key for key in required if not data.get(key)]
        if missing:
            raise HostDataError(f"host data is missing {', '.join(missing)}")
        kwargs = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        links = data.get("link_definitions") or []
        kwargs["link_definitions"] = [LinkDefinition.from_wire(link) for link in links]
        kwargs.setdefault("invocation_seed", "")
        kwargs["cluster_issuers"] = list(data.get("cluster_issuers") or [])
        if "structured_logging" in data:
            kwargs["enable_structured_logging"] = bool(data["structured_logging"])
        return cls(**kwargs)
