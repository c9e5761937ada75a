"""The dashboard's model of the lattice: loaded once through the control interface, then kept by events.

Nothing here polls. `load()` asks every host for its inventory once (and the lattice for its claims
and links); after that each CloudEvent on `wasmbus.evt.{prefix}` patches the model at once, and
the events that carry less than an inventory does (restart counts, health messages) mark their host
for one `get.{host}.inv` a moment later (`hosts_to_refresh`), so the page shows what the host says.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from typing import Any

from waft.host.events import EVENT_TYPE_PREFIX

#: Events kept for the page's event log.
EVENT_LOG_SIZE = 300
MLINFERENCE_CONTRACT = "wasmcloud:mlinference"


def event_name(event: dict[str, Any]) -> str:
    kind = str(event.get("type", ""))
    return kind[len(EVENT_TYPE_PREFIX):] if kind.startswith(EVENT_TYPE_PREFIX) else kind.rsplit(".", 1)[-1]


def link_key(link: dict[str, Any]) -> str:
    return f"{link.get('actor_id')}|{link.get('contract_id')}|{link.get('link_name') or 'default'}"


def _claims_from_event(public_key: str, claims: dict[str, Any]) -> dict[str, str]:
    """actor_started carries the claims in the event's shape; store them as `get.claims` gives them."""
    caps = claims.get("caps", "")
    tags = claims.get("tags", "")
    return {"sub": public_key, "iss": str(claims.get("issuer", "")), "name": str(claims.get("name", "")),
            "caps": ",".join(caps) if isinstance(caps, list) else str(caps or ""),
            "tags": ",".join(tags) if isinstance(tags, list) else str(tags or ""),
            "version": str(claims.get("version") or ""), "rev": str(claims.get("revision") or ""),
            "call_alias": str(claims.get("call_alias") or ""),
            "expires_human": str(claims.get("expires_human") or ""),
            "not_before_human": str(claims.get("not_before_human") or "")}


_SECTIONS = ("ready: ", "loading: ", "failed: ", "warning: ")


def models_from_health(message: str) -> list[dict[str, Any]] | None:
    """Model states from the mlinference provider's health message; None when it names none.

    The provider (providers/mlinference `Registry.health`) reports `healthy: ready: a, b; loading: c;
    failed: d (why); warning: …`, or `healthy: no models linked`. A JSON `{"models": [...]}` (the
    shape of `MlInference.ListModels`) is read as well.
    """
    text = (message or "").strip()
    if text.startswith("{"):
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            models = json.loads(text).get("models")
            if isinstance(models, list):
                return [m for m in models if isinstance(m, dict)]
        return None
    for prefix in ("healthy: ", "unhealthy: "):
        text = text.removeprefix(prefix)
    if not text.startswith(_SECTIONS[:3]):
        return None
    models: list[dict[str, Any]] = []
    section = ""
    for part in text.split("; "):
        head = next((s for s in _SECTIONS if part.startswith(s)), None)
        if head is not None:
            section, part = head[:-2], part[len(head):]
        if section in ("ready", "loading"):
            models += [{"name": n.strip(), "status": section} for n in part.split(", ") if n.strip()]
        elif section == "failed" and part:
            name, _, why = part.partition(" (")
            if models and models[-1]["status"] == "failed" and head is None and not why:
                # a '; ' inside the previous failure's message: its closing parenthesis comes later
                models[-1]["error"] = f"{models[-1]['error']}; {part.removesuffix(')')}"
            else:
                models.append({"name": name.strip(), "status": "failed", "error": why.removesuffix(")")})
    return models


def _bindle_id_of(route: str) -> str:
    """The bindle a model route is built from, when the model catalogue knows the route."""
    with contextlib.suppress(Exception):
        from waft import models

        return models.get(route).bindle_id
    return ""


class LatticeState:
    def __init__(self, prefix: str, clock: Any = time.time) -> None:
        self.prefix = prefix
        self.clock = clock
        self.hosts: dict[str, dict[str, Any]] = {}
        self.claims: dict[str, dict[str, str]] = {}
        self.links: dict[str, dict[str, Any]] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENT_LOG_SIZE)
        self.bindle_models: list[dict[str, Any]] = []
        self.provider_models: dict[str, list[dict[str, Any]]] = {}  # provider key -> models it reported
        self.bindle_error = ""
        self.load_error = ""
        self.hosts_to_refresh: set[str] = set()
        self.version = 0

    # ------------------------------------------------------------------ loading through ctl
    async def load(self, ctl: Any) -> None:
        """The initial picture: hosts (ping), each inventory, claims and links."""
        hosts = await ctl.get_hosts()
        fresh: dict[str, dict[str, Any]] = {}
        for info in hosts:
            host = self._new_host(info["id"])
            self._describe(host, info)
            fresh[info["id"]] = host
        self.hosts = fresh
        for host_id in list(self.hosts):
            with contextlib.suppress(Exception):
                self.apply_inventory(await ctl.get_inventory(host_id))
        self.claims = {c["sub"]: c for c in await ctl.get_claims() if c.get("sub")}
        self.links = {link_key(link): link for link in await ctl.get_links()}
        self.load_error = ""
        self.touch()

    async def refresh_host(self, ctl: Any, host_id: str) -> None:
        if host_id not in self.hosts:
            return
        self.apply_inventory(await ctl.get_inventory(host_id))
        self.touch()

    def _new_host(self, host_id: str) -> dict[str, Any]:
        return {"id": host_id, "labels": {}, "friendly_name": "", "version": "", "uptime_seconds": 0,
                "uptime_at": self.clock(), "actors": [], "providers": [], "lattice_prefix": self.prefix}

    def _host(self, host_id: str) -> dict[str, Any]:
        if host_id not in self.hosts:
            self.hosts[host_id] = self._new_host(host_id)
            self.hosts_to_refresh.add(host_id)
        return self.hosts[host_id]

    def _describe(self, host: dict[str, Any], info: dict[str, Any]) -> None:
        for key in ("labels", "friendly_name", "version", "js_domain", "cluster_issuers"):
            if key in info:
                host[key] = info[key]
        if "uptime_seconds" in info:
            host["uptime_seconds"] = int(info["uptime_seconds"] or 0)
            host["uptime_at"] = self.clock()

    def apply_inventory(self, inv: dict[str, Any]) -> None:
        host = self._host(inv["host_id"])
        self.hosts_to_refresh.discard(inv["host_id"])
        for key in ("labels", "friendly_name"):
            if key in inv:
                host[key] = inv[key]
        host["actors"] = [{"id": a["id"], "name": a.get("name", ""), "image_ref": a.get("image_ref", ""),
                           "instances": list(a.get("instances", []))} for a in inv.get("actors", [])]
        host["providers"] = [self._provider(p) for p in inv.get("providers", [])]
        for prov in host["providers"]:
            self._provider_models(prov)

    @staticmethod
    def _provider(p: dict[str, Any]) -> dict[str, Any]:
        healthy = p.get("healthy")
        return {"id": p["id"], "name": p.get("name", ""), "image_ref": p.get("image_ref", ""),
                "link_name": p.get("link_name", "default"), "contract_id": p.get("contract_id", ""),
                "instance_id": p.get("instance_id", ""), "restarts": int(p.get("restarts") or 0),
                "healthy": healthy, "health_message": p.get("health_message", ""),
                "status": {True: "healthy", False: "unhealthy"}.get(healthy, "starting")}

    def _provider_models(self, prov: dict[str, Any]) -> None:
        if prov.get("contract_id") != MLINFERENCE_CONTRACT:
            return
        models = models_from_health(prov.get("health_message", ""))
        if models is not None:
            self.provider_models[f"{prov['id']}|{prov['link_name']}"] = models

    # ------------------------------------------------------------------ events
    def apply_event(self, event: dict[str, Any]) -> bool:
        """Patch the model with one CloudEvent; True when the page should be told."""
        name = event_name(event)
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        source = str(event.get("source", ""))
        self.events.append({"id": event.get("id"), "time": event.get("time"), "name": name, "source": source,
                            "data": data})
        handler = getattr(self, f"_on_{name}", None)
        if handler is not None and source:
            handler(source, data)
        self.touch()
        return True

    def touch(self) -> None:
        self.version += 1

    def _on_host_started(self, source: str, data: dict[str, Any]) -> None:
        host = self._host(source)
        self._describe(host, {**data, "uptime_seconds": 0})

    def _on_host_stopped(self, source: str, data: dict[str, Any]) -> None:
        self.hosts.pop(source, None)
        self.hosts_to_refresh.discard(source)

    def _on_host_heartbeat(self, source: str, data: dict[str, Any]) -> None:
        host = self._host(source)
        self._describe(host, data)
        seen = sorted(a.get("instance_id", "") for a in data.get("actors", []))
        have = sorted(i.get("instance_id", "") for a in host["actors"] for i in a["instances"])
        seen_p = sorted(p.get("instance_id", "") for p in data.get("providers", []))
        have_p = sorted(p.get("instance_id", "") for p in host["providers"])
        if seen != have or seen_p != have_p:
            self.hosts_to_refresh.add(source)

    def _on_actor_started(self, source: str, data: dict[str, Any]) -> None:
        host = self._host(source)
        pk = data.get("public_key", "")
        claims = data.get("claims") or {}
        actor = next((a for a in host["actors"] if a["id"] == pk), None)
        if actor is None:
            actor = {"id": pk, "name": claims.get("name", ""), "image_ref": data.get("image_ref", ""),
                     "instances": []}
            host["actors"].append(actor)
        if not any(i.get("instance_id") == data.get("instance_id") for i in actor["instances"]):
            actor["instances"].append({"instance_id": data.get("instance_id", ""),
                                       "annotations": data.get("annotations") or {},
                                       "revision": claims.get("revision", 0)})
        if pk and claims:
            self.claims[pk] = {**self.claims.get(pk, {}), **_claims_from_event(pk, claims)}

    def _on_actor_stopped(self, source: str, data: dict[str, Any]) -> None:
        host = self._host(source)
        for actor in host["actors"]:
            if actor["id"] == data.get("public_key"):
                actor["instances"] = [i for i in actor["instances"] if i.get("instance_id") != data.get("instance_id")]
        host["actors"] = [a for a in host["actors"] if a["instances"]]

    def _find_provider(self, host: dict[str, Any], data: dict[str, Any]) -> dict[str, Any] | None:
        return next((p for p in host["providers"] if p["id"] == data.get("public_key")
                     and p["link_name"] == (data.get("link_name") or "default")), None)

    def _on_provider_started(self, source: str, data: dict[str, Any]) -> None:
        host = self._host(source)
        claims = data.get("claims") or {}
        fresh = self._provider({"id": data.get("public_key", ""), "name": claims.get("name", ""),
                                "image_ref": data.get("image_ref", ""), "link_name": data.get("link_name"),
                                "contract_id": data.get("contract_id", ""), "instance_id": data.get("instance_id"),
                                "healthy": None})
        old = self._find_provider(host, data)
        if old is not None:
            fresh["restarts"] = old["restarts"]
            host["providers"].remove(old)
        host["providers"].append(fresh)
        self.hosts_to_refresh.add(source)  # the restart count lives in the inventory

    def _on_provider_stopped(self, source: str, data: dict[str, Any]) -> None:
        host = self._host(source)
        prov = self._find_provider(host, data)
        if prov is None:
            return
        reason = str(data.get("reason", ""))
        if reason.startswith("exited"):  # it died; its host restarts it
            prov.update(status="restarting", healthy=False, health_message=reason)
        else:
            host["providers"].remove(prov)
            self.provider_models.pop(f"{prov['id']}|{prov['link_name']}", None)

    def _on_health_check_passed(self, source: str, data: dict[str, Any]) -> None:
        self._health(source, data, True)

    def _on_health_check_failed(self, source: str, data: dict[str, Any]) -> None:
        self._health(source, data, False)

    def _health(self, source: str, data: dict[str, Any], healthy: bool) -> None:
        prov = self._find_provider(self._host(source), data)
        if prov is None:
            self.hosts_to_refresh.add(source)
            return
        prov.update(healthy=healthy, status="healthy" if healthy else "unhealthy")
        if "message" in data:
            prov["health_message"] = str(data["message"])
        self._provider_models(prov)

    def _on_linkdef_set(self, source: str, data: dict[str, Any]) -> None:
        self.links[link_key(data)] = {k: data.get(k) for k in ("actor_id", "provider_id", "link_name",
                                                               "contract_id", "values")}

    def _on_linkdef_deleted(self, source: str, data: dict[str, Any]) -> None:
        self.links.pop(link_key(data), None)

    # ------------------------------------------------------------------ models
    def set_bindle_models(self, models: list[dict[str, Any]], error: str = "") -> None:
        self.bindle_models, self.bindle_error = models, error
        self.touch()

    def models(self) -> list[dict[str, Any]]:
        """Bindle's models, with the status the mlinference provider reports laid over them."""
        merged: dict[str, dict[str, Any]] = {}
        for m in self.bindle_models:
            merged[m["name"]] = {**m, "status": "stored", "sources": ["bindle"]}
        for models in self.provider_models.values():
            for m in models:
                name = str(m.get("name") or m.get("bindleId") or "?")
                bindle_id = str(m.get("bindleId") or m.get("bindle_id") or _bindle_id_of(name))
                key = next((k for k, v in merged.items() if bindle_id and v.get("id") == bindle_id), name)
                entry = merged.setdefault(key, {"name": name, "id": bindle_id, "sources": []})
                entry["sources"] = [*entry.get("sources", []), "provider"]
                entry["route"] = name
                entry["status"] = str(m.get("status") or "unknown")
                for field, keys in (("engine", ("graphEncoding", "engine", "graph_encoding")),
                                    ("version", ("version",)), ("size", ("size", "bytes")),
                                    ("error", ("error", "message"))):
                    value = next((m[k] for k in keys if m.get(k) not in (None, "")), None)
                    if isinstance(value, dict):  # ListModels' {variant: message}
                        value = "; ".join(f"{k}: {v}" for k, v in value.items())
                    if value is not None:
                        entry[field] = value
        return sorted(merged.values(), key=lambda m: m["name"])

    # ------------------------------------------------------------------ views
    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        hosts = {}
        for host_id, host in self.hosts.items():
            uptime = int(host.get("uptime_seconds", 0) + max(0.0, now - host.get("uptime_at", now)))
            hosts[host_id] = {**host, "uptime_seconds": uptime, "uptime_at": None}
        return {"prefix": self.prefix, "version": self.version, "now": now, "hosts": hosts,
                "claims": self.claims, "links": sorted(self.links.values(), key=link_key),
                "models": self.models(), "bindle_error": self.bindle_error, "load_error": self.load_error}

    def recent_events(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(self.events)[-limit:]
