"""Every NATS subject of the lattice, built in one place (wasmcloud-protocol §2.2, §5)."""

from __future__ import annotations

DEFAULT_PREFIX = "default"
CTL_PREFIX = "wasmbus.ctl"


def actor_rpc(prefix: str, actor_key: str) -> str:
    return f"wasmbus.rpc.{prefix}.{actor_key}"


def provider_rpc(prefix: str, provider_key: str, link_name: str) -> str:
    return f"wasmbus.rpc.{prefix}.{provider_key}.{link_name}"


def provider_linkdefs_put(prefix: str, provider_key: str, link_name: str) -> str:
    return f"{provider_rpc(prefix, provider_key, link_name)}.linkdefs.put"


def provider_linkdefs_del(prefix: str, provider_key: str, link_name: str) -> str:
    return f"{provider_rpc(prefix, provider_key, link_name)}.linkdefs.del"


def provider_health(prefix: str, provider_key: str, link_name: str) -> str:
    return f"{provider_rpc(prefix, provider_key, link_name)}.health"


def provider_shutdown(prefix: str, provider_key: str, link_name: str) -> str:
    return f"{provider_rpc(prefix, provider_key, link_name)}.shutdown"


def events(prefix: str) -> str:
    return f"wasmbus.evt.{prefix}"


def rpc_events(prefix: str) -> str:
    return f"wasmbus.rpcevt.{prefix}"


def access_log(prefix: str) -> str:
    """Waft's feed of answered HTTP requests: the httpserver provider publishes, the dashboard reads."""
    return f"waft.access.{prefix}"


def ctl(prefix: str, *parts: str) -> str:
    return ".".join((CTL_PREFIX, prefix, *parts))


def lattice_cache(prefix: str, *parts: str) -> str:
    """Subjects of the JetStream lattice cache (`lc.{prefix}.linkdefs.{id}`, `…claims.{pk}`)."""
    return ".".join(("lc", prefix, *parts))


def lattice_cache_stream(prefix: str) -> str:
    return f"LATTICECACHE_{prefix}"


def object_store_bucket(prefix: str) -> str:
    """Chunked payloads live in an object store named after the lattice (§2.5)."""
    return prefix
