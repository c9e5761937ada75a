"""The dashboard's model of the lattice: loaded once through the control interface, then kept by events.

Nothing here polls. `load()` asks every host for its inventory once (and the lattice for its claims
and links); after that each CloudEvent on `wasmbus.evt.{prefix}` patches the model at once, and
the events that carry less than an inventory does (restart counts) mark their host for one
`get.{host}.inv` a moment later (`hosts_to_refresh`), so the page shows what the host says.

Model states come from the mlinference provider's health details (`details.models`, ModelStatus maps),
in the inventory and in every health event. The host publishes a health event whenever the report
changes, not only when the healthy flag flips, so a model that becomes ready shows within one health
interval. Nothing here reads the health message: it is a sentence for people.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from waft.interfaces.mlinference import HEALTH_STATS, ModelStatus, WireError, models_in_health
from waft.lattice.events import HEALTH_CHECK_STATUS, Event

log = logging.getLogger("waft.dashboard")

#: Events kept for the page's event log.
EVENT_LOG_SIZE = 300


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


def model_entry(status: ModelStatus) -> dict[str, Any]:
    """A provider's model as the page's Models table shows it."""
    entry: dict[str, Any] = {"name": status.name, "id": status.bindle_id, "status": status.state.value,
                             "reason": status.reason}
    if status.graph_encoding:
        entry["engine"] = status.graph_encoding
    if status.retry is not None:
        entry["retry"] = status.retry.to_wire()
    if status.inputs:
        entry["inputs"] = [s.to_wire() for s in status.inputs]
    return entry


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
                "health_details": p.get("health_details") or {},
                "status": {True: "healthy", False: "unhealthy"}.get(healthy, "starting")}

    def _provider_models(self, prov: dict[str, Any]) -> None:
        """Any provider whose health lists models is a model server (mlinference is the one we ship)."""
        details = prov.get("health_details")
        try:
            models = models_in_health(details) if isinstance(details, Mapping) else None
        except WireError as exc:  # a provider's bug must not blank the page: keep what it said last
            log.warning("provider %s reported unreadable models: %s", prov["id"], exc)
            return
        if models is not None:
            self.provider_models[f"{prov['id']}|{prov['link_name']}"] = [model_entry(m) for m in models]

    # ------------------------------------------------------------------ events
    def apply_event(self, event: Event) -> bool:
        """Patch the model with one CloudEvent; True when it also went into the event log (and the page's
        list). A health report that changed only in its counters updates the model without a log entry:
        under traffic every provider sends one per health interval, and they pushed everything else out."""
        logged = not self._counters_only(event)
        if logged:
            self.events.append({"id": event.id, "time": event.time, "name": event.kind, "source": event.source,
                                "data": event.data})
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None and event.source:
            handler(event.source, event)
        self.touch()
        return logged

    def _counters_only(self, event: Event) -> bool:
        report = event.health
        if event.kind != HEALTH_CHECK_STATUS or report is None or not event.source:
            return False
        prov = self._find_provider(self._host(event.source), event)
        if prov is None:
            return False
        before = dict(prov.get("health_details") or {})
        after = dict(report.details or {})
        before.pop(HEALTH_STATS, None)
        after.pop(HEALTH_STATS, None)
        return (prov.get("healthy"), prov.get("health_message"), before) == (report.healthy, report.message, after)

    def touch(self) -> None:
        self.version += 1

    def _on_host_started(self, source: str, event: Event) -> None:
        host = self._host(source)
        self._describe(host, {**event.data, "uptime_seconds": 0})

    def _on_host_stopped(self, source: str, event: Event) -> None:
        self.hosts.pop(source, None)
        self.hosts_to_refresh.discard(source)

    def _on_host_heartbeat(self, source: str, event: Event) -> None:
        host = self._host(source)
        self._describe(host, event.data)
        seen = sorted(a.get("instance_id", "") for a in event.data.get("actors", []))
        have = sorted(i.get("instance_id", "") for a in host["actors"] for i in a["instances"])
        seen_p = sorted(p.get("instance_id", "") for p in event.data.get("providers", []))
        have_p = sorted(p.get("instance_id", "") for p in host["providers"])
        if seen != have or seen_p != have_p:
            self.hosts_to_refresh.add(source)

    def _on_actor_started(self, source: str, event: Event) -> None:
        host = self._host(source)
        pk, claims = event.public_key, event.claims
        actor = next((a for a in host["actors"] if a["id"] == pk), None)
        if actor is None:
            actor = {"id": pk, "name": claims.get("name", ""), "image_ref": event.image_ref, "instances": []}
            host["actors"].append(actor)
        if not any(i.get("instance_id") == event.instance_id for i in actor["instances"]):
            actor["instances"].append({"instance_id": event.instance_id, "annotations": event.annotations,
                                       "revision": claims.get("revision", 0)})
        if pk and claims:
            self.claims[pk] = {**self.claims.get(pk, {}), **_claims_from_event(pk, claims)}

    def _on_actor_stopped(self, source: str, event: Event) -> None:
        host = self._host(source)
        for actor in host["actors"]:
            if actor["id"] == event.public_key:
                actor["instances"] = [i for i in actor["instances"] if i.get("instance_id") != event.instance_id]
        host["actors"] = [a for a in host["actors"] if a["instances"]]

    def _find_provider(self, host: dict[str, Any], event: Event) -> dict[str, Any] | None:
        return next((p for p in host["providers"] if p["id"] == event.public_key
                     and p["link_name"] == event.link_name), None)

    def _on_provider_started(self, source: str, event: Event) -> None:
        host = self._host(source)
        fresh = self._provider({"id": event.public_key, "name": event.claims.get("name", ""),
                                "image_ref": event.image_ref, "link_name": event.link_name,
                                "contract_id": event.contract_id, "instance_id": event.instance_id,
                                "healthy": None})
        old = self._find_provider(host, event)
        if old is not None:
            fresh["restarts"] = old["restarts"]
            host["providers"].remove(old)
        host["providers"].append(fresh)
        self.hosts_to_refresh.add(source)  # the restart count lives in the inventory

    def _on_provider_stopped(self, source: str, event: Event) -> None:
        host = self._host(source)
        prov = self._find_provider(host, event)
        if prov is None:
            return
        if event.reason.startswith("exited"):  # it died; its host restarts it
            prov.update(status="restarting", healthy=False, health_message=event.reason)
        else:
            host["providers"].remove(prov)
            self.provider_models.pop(f"{prov['id']}|{prov['link_name']}", None)

    def _on_health_check_passed(self, source: str, event: Event) -> None:
        self._health(source, event)

    def _on_health_check_failed(self, source: str, event: Event) -> None:
        self._health(source, event)

    def _on_health_check_status(self, source: str, event: Event) -> None:
        self._health(source, event)

    def _health(self, source: str, event: Event) -> None:
        prov = self._find_provider(self._host(source), event)
        report = event.health
        if prov is None or report is None:
            self.hosts_to_refresh.add(source)
            return
        prov.update(healthy=report.healthy, status="healthy" if report.healthy else "unhealthy",
                    health_message=report.message, health_details=report.details)
        self._provider_models(prov)

    def _on_linkdef_set(self, source: str, event: Event) -> None:
        self.links[link_key(event.data)] = {k: event.data.get(k) for k in ("actor_id", "provider_id", "link_name",
                                                                           "contract_id", "values")}

    def _on_linkdef_deleted(self, source: str, event: Event) -> None:
        self.links.pop(link_key(event.data), None)

    # ------------------------------------------------------------------ models
    def set_bindle_models(self, models: list[dict[str, Any]], error: str = "") -> None:
        self.bindle_models, self.bindle_error = models, error
        self.touch()

    def models(self) -> list[dict[str, Any]]:
        """Bindle's models, with the state each mlinference provider reports laid over them (by bindle id)."""
        merged: dict[str, dict[str, Any]] = {}
        for m in self.bindle_models:
            merged[m["name"]] = {**m, "status": "stored", "sources": ["bindle"]}
        for models in self.provider_models.values():
            for m in models:
                key = next((k for k, v in merged.items() if m["id"] and v.get("id") == m["id"]), m["name"])
                entry = merged.setdefault(key, {"name": m["name"], "id": m["id"], "sources": []})
                entry["sources"] = [*entry.get("sources", []), "provider"]
                entry["route"] = m["name"]
                entry.update({k: v for k, v in m.items() if k not in ("name", "id")})
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
