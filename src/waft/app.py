"""Declarative applications: a wadm-like YAML manifest, and a reconciler that makes the lattice match it.

A manifest names actors (image ref, count), providers (image ref, link name, config) and links
(actor, provider, contract, values). `reconcile` reads the lattice through the control interface,
starts or scales what is missing, re-puts changed links, and `undeploy` removes what the manifest
started. Applying the same manifest twice changes nothing: every step compares before it acts.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from waft.ctl import CtlClient, CtlError
from waft.errors import WaftError
from waft.lattice.events import Event
from waft.oci.refs import looks_like_oci


class ManifestError(WaftError, ValueError):
    """A manifest that cannot be deployed; the message names the entry and the problem."""


@dataclass(frozen=True)
class ActorSpec:
    name: str
    image: str
    count: int = 1


@dataclass(frozen=True)
class ProviderEntry:
    name: str
    image: str
    link_name: str = "default"
    config: str = ""


@dataclass(frozen=True)
class LinkSpec:
    actor: str
    provider: str
    contract: str
    link_name: str = "default"
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    actors: tuple[ActorSpec, ...]
    providers: tuple[ProviderEntry, ...]
    links: tuple[LinkSpec, ...]
    source: Path | None = None

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ManifestError(f"cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ManifestError(f"{path} is not valid YAML: {exc}") from None
        return cls.parse(data, base=path.parent, source=path)

    @classmethod
    def parse(cls, data: Any, *, base: Path | None = None, source: Path | None = None) -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError("a manifest is a YAML mapping with name, actors, providers and links")
        unknown = set(data) - {"name", "version", "description", "actors", "providers", "links"}
        if unknown:
            raise ManifestError(f"unknown manifest keys: {', '.join(sorted(unknown))}")
        name = _text(data, "name", "manifest")

        def resolve(image: str) -> str:
            """Relative file paths are relative to the manifest; OCI refs and python: refs stay."""
            if base is None or image.startswith(("python:", "/")) or looks_like_oci(image):
                return image
            return str((base / image).resolve())

        actors = tuple(ActorSpec(_text(a, "name", "actor"), resolve(_text(a, "image", "actor")),
                                 _count(a)) for a in _list(data, "actors"))
        providers = tuple(ProviderEntry(_text(p, "name", "provider"), resolve(_text(p, "image", "provider")),
                                        str(p.get("link_name") or "default"), _config(p))
                          for p in _list(data, "providers"))
        links = tuple(LinkSpec(_text(ln, "actor", "link"), _text(ln, "provider", "link"),
                               _text(ln, "contract", "link"), str(ln.get("link_name") or "default"),
                               {str(k): str(v) for k, v in (ln.get("values") or {}).items()})
                      for ln in _list(data, "links"))
        names = {a.name for a in actors}
        pnames = {p.name for p in providers}
        for link in links:
            if link.actor not in names:
                raise ManifestError(f"link names actor {link.actor!r}, which the manifest does not declare")
            if link.provider not in pnames:
                raise ManifestError(f"link names provider {link.provider!r}, which the manifest does not declare")
        return cls(name, str(data.get("version") or "0.0.0"), actors, providers, links, source)


def _list(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ManifestError(f"{key} must be a list of mappings")
    return value


def _text(entry: dict[str, Any], key: str, kind: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{kind} entry {entry.get('name', entry)!r} needs a non-empty {key!r}")
    return value


def _count(entry: dict[str, Any]) -> int:
    count = entry.get("count", 1)
    if not isinstance(count, int) or count < 0:
        raise ManifestError(f"actor {entry.get('name')!r}: count must be a non-negative integer")
    return count


def _config(entry: dict[str, Any]) -> str:
    config = entry.get("config")
    if config is None:
        return ""
    return config if isinstance(config, str) else json.dumps(config)


@dataclass
class LatticeState:
    """What runs where, read from every host's inventory."""

    hosts: list[dict[str, Any]]
    inventories: dict[str, dict[str, Any]]

    def actor_instances(self, image: str) -> list[tuple[str, str, int]]:
        """(host id, actor id, instance count) for each host running `image`."""
        return [(host_id, actor["id"], len(actor["instances"]))
                for host_id, inv in self.inventories.items() for actor in inv.get("actors", [])
                if actor.get("image_ref") == image]

    def provider(self, image: str, link_name: str) -> tuple[str, str] | None:
        for host_id, inv in self.inventories.items():
            for provider in inv.get("providers", []):
                if provider.get("image_ref") == image and provider.get("link_name") == link_name:
                    return host_id, provider["id"]
        return None


async def read_state(ctl: CtlClient) -> LatticeState:
    hosts = await ctl.get_hosts()
    if not hosts:
        raise CtlError(f"no host is running on lattice {ctl.prefix!r}: start one with `waft up`")
    inventories = {h["id"]: await ctl.get_inventory(h["id"]) for h in hosts}
    return LatticeState(hosts, inventories)


async def reconcile(ctl: CtlClient, manifest: Manifest, *, host_id: str | None = None,
                    timeout: float = 60.0) -> list[str]:
    """Drive the lattice to the manifest; returns what was done, one line per action.

    What is missing starts on `host_id` (`waft up` passes its own host: an app deployed by `up` must
    not land on whichever other host answered the ping first, or stopping that host takes the app
    with it); without one, on the first host that answered. Actors that already run somewhere are
    scaled where they run."""
    done: list[str] = []
    state = await read_state(ctl)
    target_host = await ctl.choose_host(host_id, known=[h["id"] for h in state.hosts])
    actor_ids: dict[str, str] = {}
    provider_ids: dict[str, str] = {}
    async with ctl.events() as events:
        for actor in manifest.actors:
            running = state.actor_instances(actor.image)
            total = sum(count for _, _, count in running)
            if running:
                actor_ids[actor.name] = running[0][1]
            if total < actor.count:
                where = running[0][0] if running else target_host
                await ctl.start_actor(where, actor.image, actor.count - total)
                started = await wait_started(events, "actor_started", "actor_start_failed", actor.image, timeout)
                actor_ids[actor.name] = started.public_key
                done.append(f"started {actor.count - total} x actor {actor.name}")
            elif total > actor.count:
                excess = total - actor.count
                for runs_on, actor_id, count in running:
                    take = min(excess, count)
                    if take:
                        if take == count and actor.count == 0:
                            await ctl.stop_actor(runs_on, actor_id, 0)
                        else:
                            await ctl.scale_actor(runs_on, actor_id, count - take, actor.image)
                        excess -= take
                done.append(f"scaled actor {actor.name} down to {actor.count}")
        for provider in manifest.providers:
            found = state.provider(provider.image, provider.link_name)
            if found:
                provider_ids[provider.name] = found[1]
                continue
            await ctl.start_provider(target_host, provider.image, provider.link_name, provider.config)
            started = await wait_started(events, "provider_started", "provider_start_failed", provider.image,
                                          timeout)
            provider_ids[provider.name] = started.public_key
            done.append(f"started provider {provider.name}")
    existing = {(ln["actor_id"], ln["contract_id"], ln["link_name"]): ln for ln in await ctl.get_links()}
    for link in manifest.links:
        actor_id, provider_id = actor_ids.get(link.actor), provider_ids.get(link.provider)
        if not actor_id or not provider_id:
            continue  # an actor scaled to 0 has no key to link
        current = existing.get((actor_id, link.contract, link.link_name))
        if current and current["provider_id"] == provider_id and current.get("values", {}) == link.values:
            continue
        await ctl.put_link(actor_id, provider_id, link.contract, link.link_name, link.values)
        done.append(f"linked {link.actor} -> {link.provider} ({link.contract})")
    return done


async def wait_started(events: asyncio.Queue[Event], ok: str, failed: str, image: str, timeout: float) -> Event:
    """The `ok` event for `image`, or CtlError with the reason of its `failed` event."""
    async def find() -> Event:
        while True:
            event = await events.get()
            if event.image_ref != image:
                continue
            if event.kind == ok:
                return event
            if event.kind == failed:
                raise CtlError(event.error or f"{image} failed to start")

    try:
        return await asyncio.wait_for(find(), timeout)
    except TimeoutError:
        raise CtlError(f"{image} did not start within {timeout:g} s") from None


async def undeploy(ctl: CtlClient, manifest: Manifest) -> list[str]:
    """Remove the manifest's links, actors and providers from the lattice."""
    done = []
    state = await read_state(ctl)
    actor_ids = {a.name: [aid for _, aid, _ in state.actor_instances(a.image)] for a in manifest.actors}
    for link in manifest.links:
        for actor_id in actor_ids.get(link.actor, []):
            try:
                await ctl.delete_link(actor_id, link.contract, link.link_name)
                done.append(f"unlinked {link.actor} ({link.contract})")
            except CtlError:
                pass  # already gone
    for actor in manifest.actors:
        for host_id, actor_id, _ in state.actor_instances(actor.image):
            await ctl.stop_actor(host_id, actor_id, 0)
            done.append(f"stopped actor {actor.name} on {host_id[:8]}")
    for provider in manifest.providers:
        found = state.provider(provider.image, provider.link_name)
        if found:
            await ctl.stop_provider(found[0], found[1], provider.link_name)
            done.append(f"stopped provider {provider.name}")
    return done


async def status(ctl: CtlClient, manifest: Manifest) -> list[dict[str, Any]]:
    """Desired vs actual, one row per component."""
    state = await read_state(ctl)
    rows: list[dict[str, Any]] = []
    for actor in manifest.actors:
        running = sum(count for _, _, count in state.actor_instances(actor.image))
        rows.append({"kind": "actor", "name": actor.name, "desired": actor.count, "running": running,
                     "ok": running == actor.count})
    for provider in manifest.providers:
        running = 1 if state.provider(provider.image, provider.link_name) else 0
        rows.append({"kind": "provider", "name": provider.name, "desired": 1, "running": running, "ok": running == 1})
    return rows
