"""Declarative applications: wadm's OAM manifests (or Waft's shorthand), and a reconciler that makes the lattice match.

Both formats become one model: actors (image ref, replicas, spreads), providers (image ref, contract,
link name, config) and links (actor, provider, contract, values). `reconcile` reads the lattice through
the control interface, starts or scales what is missing, re-puts changed links, and `undeploy` removes
what the app started. Everything an app starts carries wadm's annotations (`wasmcloud.dev/managed-by`,
`wasmcloud.dev/appspec`), and only instances carrying them are counted, scaled or stopped, so actors
started by hand survive. Applying the same manifest twice changes nothing: every step compares first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from waft.ctl import CtlClient, CtlError, wait_for_event
from waft.errors import WaftError
from waft.lattice.events import Event
from waft.oci.refs import looks_like_oci


class ManifestError(WaftError, ValueError):
    """A manifest that cannot be deployed; the message names the entry and the problem."""


#: The annotations wadm puts on what it starts (wadm 0.x `model.rs`): hosts keep them per instance, so an
#: app can tell its own instances from hand-started ones of the same actor and touch only those.
MANAGED_BY = "wasmcloud.dev/managed-by"
MANAGER = "wadm"
APP_SPEC = "wasmcloud.dev/appspec"
SPREAD_NAME = "wasmcloud.dev/spread_name"

OAM_API_VERSION = "core.oam.dev/v1beta1"
DEFAULT_SPREAD = "default"


@dataclass(frozen=True)
class Spread:
    """One `spreadscaler` spread: a share (`weight`) of the replicas on hosts whose labels include `requirements`."""

    name: str = DEFAULT_SPREAD
    requirements: dict[str, str] = field(default_factory=dict)
    weight: int = 100


def compute_spread(replicas: int, spreads: tuple[Spread, ...]) -> list[tuple[Spread, int]]:
    """How many replicas each spread gets, as wadm's `compute_spread`: spreads ordered by weight (heaviest
    first, ties in manifest order), each `replicas * weight // total`, and what rounding left over one
    each to the first. The same manifest gives the same counts under wadm and here."""
    ordered = sorted(spreads or (Spread(),), key=lambda s: -s.weight)
    total = sum(s.weight for s in ordered) or 1
    counts = [replicas * s.weight // total for s in ordered]
    for i in range(replicas - sum(counts)):
        counts[i % len(counts)] += 1
    return list(zip(ordered, counts, strict=True))


@dataclass(frozen=True)
class ActorSpec:
    name: str
    image: str
    count: int = 1
    spread: tuple[Spread, ...] = ()

    def spread_counts(self) -> list[tuple[Spread, int]]:
        return compute_spread(self.count, self.spread)


@dataclass(frozen=True)
class ProviderEntry:
    """A capability component; `count` providers run, at most one per host (a host runs one instance of a
    provider key and link name), and share its calls through the provider's queue group."""

    name: str
    image: str
    link_name: str = "default"
    config: str = ""
    contract: str = ""
    spread: tuple[Spread, ...] = ()
    count: int = 1

    def spread_counts(self) -> list[tuple[Spread, int]]:
        return compute_spread(self.count, self.spread)


@dataclass(frozen=True)
class LinkSpec:
    actor: str
    provider: str
    contract: str
    link_name: str = "default"
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """An application, whichever format it was written in: wadm's OAM or Waft's shorthand."""

    name: str
    version: str
    actors: tuple[ActorSpec, ...]
    providers: tuple[ProviderEntry, ...]
    links: tuple[LinkSpec, ...]
    source: Path | None = None
    description: str = ""

    @property
    def annotations(self) -> dict[str, str]:
        """What every instance this app starts carries (and all that `undeploy` may stop)."""
        return {MANAGED_BY: MANAGER, APP_SPEC: self.name}

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ManifestError(f"cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ManifestError(f"{path} is not valid YAML: {exc}") from None
        return cls.parse(data, base=path.parent, source=path.absolute())

    @classmethod
    def parse(cls, data: Any, *, base: Path | None = None, source: Path | None = None) -> Manifest:
        """Either format: a mapping with `apiVersion`/`kind`/`spec` is wadm's OAM, anything else Waft's own."""
        if isinstance(data, dict) and {"apiVersion", "kind", "spec"} & set(data):
            return _parse_oam(data, _resolver(base), source)
        if not isinstance(data, dict):
            raise ManifestError("a manifest is a YAML mapping: wadm's (apiVersion: core.oam.dev/v1beta1, "
                                "kind: Application) or Waft's (name, actors, providers, links)")
        unknown = set(data) - {"name", "version", "description", "actors", "providers", "links"}
        if unknown:
            raise ManifestError(f"unknown manifest keys: {', '.join(sorted(unknown))}")
        name = _app_name(_text(data, "name", "manifest"))
        resolve = _resolver(base)
        actors = tuple(ActorSpec(_text(a, "name", "actor"), resolve(_text(a, "image", "actor")),
                                 _count(a)) for a in _list(data, "actors"))
        links = tuple(LinkSpec(_text(ln, "actor", "link"), _text(ln, "provider", "link"),
                               _text(ln, "contract", "link"), str(ln.get("link_name") or "default"),
                               {str(k): str(v) for k, v in (ln.get("values") or {}).items()})
                      for ln in _list(data, "links"))
        contracts = {ln.provider: ln.contract for ln in reversed(links)}
        providers = tuple(ProviderEntry(pname, resolve(_text(p, "image", "provider")),
                                        str(p.get("link_name") or "default"), _config(p), contracts.get(pname, ""),
                                        count=_count(p))
                          for p in _list(data, "providers") for pname in [_text(p, "name", "provider")])
        names = {a.name for a in actors}
        pnames = {p.name for p in providers}
        for link in links:
            if link.actor not in names:
                raise ManifestError(f"link names actor {link.actor!r}, which the manifest does not declare")
            if link.provider not in pnames:
                raise ManifestError(f"link names provider {link.provider!r}, which the manifest does not declare")
        return cls(name, str(data.get("version") or "0.0.0"), actors, providers, links, source,
                   str(data.get("description") or ""))

    def to_oam(self) -> dict[str, Any]:
        """This app as a wadm manifest (what the app store keeps and `waft app get` prints)."""
        def spread(spreads: tuple[Spread, ...]) -> dict[str, Any]:
            return {"spread": [{"name": s.name, "requirements": dict(s.requirements), "weight": s.weight}
                               for s in spreads]} if spreads else {}

        components: list[dict[str, Any]] = []
        for actor in self.actors:
            traits: list[dict[str, Any]] = [{"type": "spreadscaler",
                                             "properties": {"replicas": actor.count, **spread(actor.spread)}}]
            traits += [{"type": "linkdef", "properties": {"target": link.provider, "values": dict(link.values)}}
                       for link in self.links if link.actor == actor.name]
            components.append({"name": actor.name, "type": "actor", "properties": {"image": actor.image},
                               "traits": traits})
        for provider in self.providers:
            props: dict[str, Any] = {"image": provider.image, "contract": provider.contract,
                                     "link_name": provider.link_name}
            if provider.config:
                try:
                    props["config"] = json.loads(provider.config)
                except ValueError:
                    props["config"] = provider.config
            component: dict[str, Any] = {"name": provider.name, "type": "capability", "properties": props}
            if provider.spread or provider.count != 1:
                component["traits"] = [{"type": "spreadscaler", "properties": {"replicas": provider.count,
                                                                               **spread(provider.spread)}}]
            components.append(component)
        annotations = {"version": self.version, **({"description": self.description} if self.description else {})}
        return {"apiVersion": OAM_API_VERSION, "kind": "Application",
                "metadata": {"name": self.name, "annotations": annotations}, "spec": {"components": components}}


#: NATS key-value keys (the app store's) allow these; wadm's names are DNS-like and fit.
_NAME = re.compile(r"^[-_=a-zA-Z0-9]+(\.[-_=a-zA-Z0-9]+)*$")


def _app_name(name: str) -> str:
    if not _NAME.match(name):
        raise ManifestError(f"application name {name!r} may hold only letters, digits, '-', '_', '=' and inner dots")
    return name


def _resolver(base: Path | None) -> Callable[[str], str]:
    def resolve(image: str) -> str:
        """Relative file paths (and `file://` ones) are relative to the manifest; OCI and python: refs stay."""
        path = image.removeprefix("file://")
        if image.startswith("python:") or (path == image and looks_like_oci(image)):
            return image
        if base is None or path.startswith("/"):
            return path
        return str((base / path).resolve())

    return resolve


def _parse_oam(data: dict[str, Any], resolve: Callable[[str], str], source: Path | None) -> Manifest:
    """wadm's OAM manifest -> the one internal model: actors with spreadscalers, capabilities, linkdef traits."""
    if data.get("apiVersion") != OAM_API_VERSION:
        raise ManifestError(f"apiVersion must be {OAM_API_VERSION}, got {data.get('apiVersion')!r}")
    if data.get("kind") != "Application":
        raise ManifestError(f"kind must be Application, got {data.get('kind')!r}")
    metadata = _mapping(data, "metadata", "manifest")
    name = _app_name(_text(metadata, "name", "metadata"))
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ManifestError("metadata.annotations must be a mapping")
    components = _list(_mapping(data, "spec", "manifest"), "components")
    actors: list[ActorSpec] = []
    providers: list[ProviderEntry] = []
    wanted_links: list[tuple[str, str, dict[str, str]]] = []
    for component in components:
        cname = _text(component, "name", "component")
        if component.get("type") not in ("actor", "capability"):
            raise ManifestError(f"component {cname!r}: type must be actor or capability, "
                                f"got {component.get('type')!r}")
        props = _mapping(component, "properties", f"component {cname!r}")
        image = resolve(_text(props, "image", f"component {cname!r} properties"))
        replicas, spread = 1, ()
        for trait in _list(component, "traits"):
            kind, tprops = trait.get("type"), _mapping(trait, "properties", f"trait of {cname!r}")
            if kind == "spreadscaler":
                replicas, spread = _replicas(cname, tprops), _spreads(cname, tprops)
            elif kind == "linkdef" and component.get("type") == "actor":
                values = tprops.get("values") or {}
                if not isinstance(values, dict):
                    raise ManifestError(f"linkdef of {cname!r}: values must be a mapping")
                wanted_links.append((cname, _text(tprops, "target", f"linkdef of {cname!r}"),
                                     {str(k): str(v) for k, v in values.items()}))
            else:
                raise ManifestError(f"component {cname!r}: trait type {kind!r} is not supported here "
                                    "(actors: spreadscaler, linkdef; capabilities: spreadscaler)")
        if component.get("type") == "actor":
            actors.append(ActorSpec(cname, image, replicas, spread))
        else:
            providers.append(ProviderEntry(cname, image, str(props.get("link_name") or "default"), _config(props),
                                           _text(props, "contract", f"capability {cname!r} properties"), spread,
                                           replicas))
    by_name = {p.name: p for p in providers}
    links = []
    for actor, target, values in wanted_links:
        provider = by_name.get(target)
        if provider is None:
            raise ManifestError(f"linkdef of {actor!r} targets {target!r}, which is not a capability component")
        links.append(LinkSpec(actor, target, provider.contract, provider.link_name, values))
    return Manifest(name, str(annotations.get("version") or "0.0.0"), tuple(actors), tuple(providers),
                    tuple(links), source, str(annotations.get("description") or ""))


def _replicas(component: str, props: dict[str, Any]) -> int:
    replicas = props.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ManifestError(f"spreadscaler of {component!r}: replicas must be a non-negative integer")
    return replicas


def _spreads(component: str, props: dict[str, Any]) -> tuple[Spread, ...]:
    spreads = []
    for entry in _list(props, "spread"):
        requirements = entry.get("requirements") or {}
        weight = entry.get("weight", 100)
        if not isinstance(requirements, dict) or not isinstance(weight, int) or weight < 0:
            raise ManifestError(f"spread of {component!r}: requirements is a mapping, weight a non-negative integer")
        spreads.append(Spread(str(entry.get("name") or f"spread{len(spreads)}"),
                              {str(k): str(v) for k, v in requirements.items()}, weight))
    return tuple(spreads)


def _mapping(entry: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = entry.get(key)
    if not isinstance(value, dict):
        raise ManifestError(f"{where} needs a mapping {key!r}")
    return value


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
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ManifestError(f"{entry.get('name')!r}: count must be a non-negative integer")
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

    def actor_instances(self, image: str, annotations: dict[str, str] | None = None) -> list[tuple[str, str, int]]:
        """(host id, actor id, instance count) for each host running `image`; with `annotations`, only the
        instances carrying them are counted (and hosts with none of them left out)."""
        wanted = (annotations or {}).items()
        found = []
        for host_id, inv in self.inventories.items():
            for actor in inv.get("actors", []):
                if actor.get("image_ref") != image:
                    continue
                count = sum(1 for i in actor["instances"] if wanted <= (i.get("annotations") or {}).items())
                if count or not wanted:
                    found.append((host_id, actor["id"], count))
        return found

    def others(self, actor_id: str, annotations: dict[str, str]) -> int:
        """Instances of `actor_id`, anywhere, that do not carry `annotations` (someone else's)."""
        return sum(1 for inv in self.inventories.values() for actor in inv.get("actors", [])
                   if actor["id"] == actor_id for i in actor["instances"]
                   if not annotations.items() <= (i.get("annotations") or {}).items())

    def providers(self, image: str, link_name: str,
                  annotations: dict[str, str] | None = None) -> list[tuple[str, str]]:
        """(host id, provider id) of every host running `image` on `link_name` (with `annotations`: only the
        ones carrying them)."""
        wanted = (annotations or {}).items()
        return [(host_id, provider["id"]) for host_id, inv in self.inventories.items()
                for provider in inv.get("providers", [])
                if (provider.get("image_ref") == image and provider.get("link_name") == link_name
                    and wanted <= (provider.get("annotations") or {}).items())]

    def provider(self, image: str, link_name: str,
                 annotations: dict[str, str] | None = None) -> tuple[str, str] | None:
        found = self.providers(image, link_name, annotations)
        return found[0] if found else None

    def eligible(self, spread: Spread) -> list[str]:
        """The hosts whose labels include the spread's requirements, in ping order."""
        return [h["id"] for h in self.hosts if spread.requirements.items() <= (h.get("labels") or {}).items()]


async def read_state(ctl: CtlClient, *, wait: float | None = None) -> LatticeState:
    hosts = await ctl.get_hosts(wait)
    if not hosts:
        raise CtlError(f"no host is running on lattice {ctl.prefix!r}: start one with `waft up`")
    inventories = {}
    for h in list(hosts):
        try:
            inventories[h["id"]] = await ctl.get_inventory(h["id"])
        except CtlError:  # it answered the ping and left since: it runs nothing any more
            hosts.remove(h)
    return LatticeState(hosts, inventories)


def _no_host(spread: Spread, where: str) -> CtlError:
    return CtlError(f"{where}: no host on the lattice has the labels {spread.requirements} "
                    f"that spread {spread.name!r} requires")


def _spread_evenly(hosts: list[str], current: dict[str, int], add: int) -> dict[str, int]:
    """Where `add` more instances go so that a spread stays even over its hosts: each to the host that then
    has the fewest (ties: the earlier host in `hosts`); a host's loss then costs at most its share."""
    load = {h: current.get(h, 0) for h in hosts}
    placed: dict[str, int] = {}
    for _ in range(add):
        host = min(hosts, key=lambda h: load[h])
        load[host] += 1
        placed[host] = placed.get(host, 0) + 1
    return placed


def _preferred_first(hosts: list[str], preferred: str | None) -> list[str]:
    return sorted(hosts, key=lambda h: h != preferred)


@contextlib.contextmanager
def _unless_keep_going(done: list[str], keep_going: bool) -> Iterator[None]:
    try:
        yield
    except CtlError as exc:
        if not keep_going:
            raise
        done.append(f"failed: {exc}")


class StartBackoff(Protocol):
    """How long a component whose start failed is left alone (`waft.reconciler.ComponentBackoff`): a start
    that keeps failing (an image that cannot be fetched or is not trusted) must not be retried every pass."""

    def waiting(self, key: str) -> bool: ...

    def failed(self, key: str) -> float: ...

    def succeeded(self, key: str) -> None: ...


@contextlib.contextmanager
def _backing_off(backoff: StartBackoff | None, key: str) -> Iterator[None]:
    if backoff is None:
        yield
        return
    try:
        yield
    except CtlError as exc:
        raise CtlError(f"{exc} (next try in {backoff.failed(key):g} s)") from None
    backoff.succeeded(key)


async def reconcile(ctl: CtlClient, manifest: Manifest, *, host_id: str | None = None,
                    timeout: float = 60.0, state: LatticeState | None = None,
                    keep_going: bool = False,
                    backoff: StartBackoff | None = None) -> list[str]:
    """Drive the lattice to the manifest; returns what was done, one line per action.

    Only instances carrying the app's annotations (`Manifest.annotations`, plus the spread's name) count
    and are scaled: a hand-started instance of the same actor is neither stopped nor taken as the app's.
    Each spread's replicas spread evenly over the hosts whose labels meet its requirements (new ones go to
    the eligible host running the fewest, surplus ones stop where most run), and providers run at most
    one per eligible host. With `host_id` (`waft up` passes its own host: an app deployed by `up` must not
    land on whichever other host answered first, or stopping that host takes the app with it) what is
    missing starts on that host when it meets the spread's requirements. A provider someone else already
    runs (same image and link name) counts and is used, and is never the app's to stop. `state` is a
    reading of the lattice the caller already has (the reconciler's). With `keep_going` (the reconciler) a
    spread that cannot be met now is reported as a "failed: ..." line and the rest of the app, links
    included, is still reconciled; without it the first failure raises, as a deploy should. With `backoff`
    (the reconciler's) a component whose start failed is not started again until its backoff has passed."""
    done: list[str] = []
    state = state or await read_state(ctl)
    if host_id:
        await ctl.choose_host(host_id, known=[h["id"] for h in state.hosts])
    owned = manifest.annotations
    actor_ids: dict[str, str] = {}
    provider_ids: dict[str, str] = {}
    async with ctl.events() as events:
        for actor in manifest.actors:
            if anyone := state.actor_instances(actor.image):
                actor_ids[actor.name] = anyone[0][1]
            spreads = actor.spread_counts()
            for spread, wanted in spreads:
                with _unless_keep_going(done, keep_going):
                    mine = {**owned, SPREAD_NAME: spread.name}
                    running = state.actor_instances(actor.image, mine)
                    total = sum(count for _, _, count in running)
                    named = f"actor {actor.name}" + (f" (spread {spread.name})" if len(spreads) > 1 else "")
                    if total < wanted:
                        hosts = state.eligible(spread)
                        if not hosts:
                            raise _no_host(spread, named)
                        key = f"{manifest.name}/{named}"
                        if backoff is not None and backoff.waiting(key):
                            continue
                        placed = ({host_id: wanted - total} if host_id in hosts else
                                  _spread_evenly(hosts, {h: c for h, _, c in running}, wanted - total))
                        with _backing_off(backoff, key):
                            for where, add in placed.items():
                                await ctl.start_actor(where, actor.image, add, mine)
                                for _ in range(add):  # one event per instance: all of them, before going on
                                    started = await wait_started(events, "actor_started", "actor_start_failed",
                                                                 actor.image, timeout)
                                actor_ids[actor.name] = started.public_key
                        done.append(f"started {wanted - total} x {named}")
                    elif total > wanted:
                        excess = total - wanted
                        while excess:  # one at a time from the host running the most keeps the spread even
                            runs_on, actor_id, _ = max(running, key=lambda r: r[2])
                            await ctl.stop_actor(runs_on, actor_id, 1, mine)
                            await wait_for_event(events, "actor_stopped", timeout, public_key=actor_id)
                            running = [(h, a, c - (h == runs_on)) for h, a, c in running]
                            excess -= 1
                        done.append(f"scaled {named} down to {wanted}")
        for provider in manifest.providers:
            if found := state.provider(provider.image, provider.link_name):
                provider_ids[provider.name] = found[1]
            spreads = provider.spread_counts()
            for spread, wanted in spreads:
                with _unless_keep_going(done, keep_going):
                    mine = {**owned, SPREAD_NAME: spread.name}
                    named = f"provider {provider.name}" + (f" (spread {spread.name})" if len(spreads) > 1 else "")
                    hosts = state.eligible(spread)
                    if not hosts and wanted:
                        raise _no_host(spread, named)
                    running = [h for h, _ in state.providers(provider.image, provider.link_name) if h in hosts]
                    key = f"{manifest.name}/{named}"
                    if len(running) < wanted and not (backoff is not None and backoff.waiting(key)):
                        free = _preferred_first([h for h in hosts if h not in running], host_id)
                        with _backing_off(backoff, key):
                            for where in free[:wanted - len(running)]:
                                await ctl.start_provider(where, provider.image, provider.link_name, provider.config,
                                                         mine)
                                started = await wait_started(events, "provider_started", "provider_start_failed",
                                                             provider.image, timeout)
                                provider_ids[provider.name] = started.public_key
                        started_n = min(len(free), wanted - len(running))
                        if started_n:
                            done.append(f"started {started_n} x {named}" if wanted > 1 else f"started {named}")
                        if len(running) + started_n < wanted:
                            done.append(f"{named}: {len(running) + started_n} of {wanted} running, one per host "
                                        f"and only {len(hosts)} host(s) meet the spread's requirements")
                    elif len(running) > wanted:
                        ours = [(h, pk) for h, pk in state.providers(provider.image, provider.link_name, mine)
                                if h in hosts]
                        for runs_on, provider_id in ours[:len(running) - wanted]:
                            await ctl.stop_provider(runs_on, provider_id, provider.link_name)
                            await wait_for_event(events, "provider_stopped", timeout, public_key=provider_id)
                        done.append(f"scaled {named} down to {max(wanted, len(running) - len(ours))}")
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


async def undeploy(ctl: CtlClient, manifest: Manifest, *, keep: Manifest | None = None,
                   timeout: float = 60.0) -> list[str]:
    """Remove what the app started: its annotated actor instances and providers, and its links.

    Instances without the app's annotations (started by hand, or by another app) keep running, and a
    link stays while such instances of its actor remain, since they share the actor's key and so the
    link. With `keep` (the version replacing this one), what `keep` also declares is left alone."""
    done = []
    state = await read_state(ctl)
    owned = manifest.annotations
    kept_actors = {a.image for a in keep.actors} if keep else set()
    kept_providers = {(p.image, p.link_name) for p in keep.providers} if keep else set()
    images = {a.name: a.image for a in manifest.actors}
    kept_images = {a.name: a.image for a in keep.actors} if keep else {}
    kept_links = {(kept_images.get(ln.actor), ln.contract, ln.link_name) for ln in keep.links} if keep else set()
    for link in manifest.links:
        if (images.get(link.actor), link.contract, link.link_name) in kept_links:
            continue
        for _, actor_id, _ in state.actor_instances(images.get(link.actor, ""), owned):
            if state.others(actor_id, owned):
                done.append(f"kept link {link.actor} ({link.contract}): instances the app did not start use it")
                continue
            try:
                await ctl.delete_link(actor_id, link.contract, link.link_name)
                done.append(f"unlinked {link.actor} ({link.contract})")
            except CtlError:
                pass  # already gone
    async with ctl.events() as events:
        for actor in manifest.actors:
            if actor.image in kept_actors:
                continue
            for host_id, actor_id, count in state.actor_instances(actor.image, owned):
                await ctl.stop_actor(host_id, actor_id, count, owned)
                for _ in range(count):
                    await wait_for_event(events, "actor_stopped", timeout, public_key=actor_id)
                done.append(f"stopped {count} x actor {actor.name} on {host_id[:8]}")
        for provider in manifest.providers:
            if (provider.image, provider.link_name) in kept_providers:
                continue
            found = state.providers(provider.image, provider.link_name, owned)
            for runs_on, provider_id in found:
                await ctl.stop_provider(runs_on, provider_id, provider.link_name)
                await wait_for_event(events, "provider_stopped", timeout, public_key=provider_id)
            if found:
                done.append(f"stopped provider {provider.name}" if len(found) == 1
                            else f"stopped {len(found)} x provider {provider.name}")
    return done


async def status(ctl: CtlClient, manifest: Manifest) -> list[dict[str, Any]]:
    """Desired vs actual, one row per component; only the app's own instances count as running."""
    state = await read_state(ctl)
    owned = manifest.annotations
    rows: list[dict[str, Any]] = []
    for actor in manifest.actors:
        running = sum(count for _, _, count in state.actor_instances(actor.image, owned))
        rows.append({"kind": "actor", "name": actor.name, "desired": actor.count, "running": running,
                     "ok": running == actor.count})
    for provider in manifest.providers:
        running = len(state.providers(provider.image, provider.link_name))
        rows.append({"kind": "provider", "name": provider.name, "desired": provider.count, "running": running,
                     "ok": running >= provider.count})
    return rows
