"""The provider supervisor: start providers as child processes, watch their health, restart the dead.

A provider gets its HostData (with every current link) on stdin, exactly as wasmCloud hands it over,
and the pipe stays open: when the host dies the provider reads EOF and exits, so none is orphaned.
A provider that exits on its own is restarted with backoff and gets its links back in its HostData.

Health is kept whole (flag, message and the provider's structured details) and published when it
changes: `health_check_passed`/`_failed` when the flag flips, as 0.x did, and `health_check_status`
when only the report changed. 0.x sent nothing in that case, so a model server whose models went from
loading to ready looked loading to every reader until something else happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

from waft.errors import WaftError
from waft.lattice import events, subjects
from waft.lattice.codec import pack
from waft.lattice.events import Event
from waft.lattice.health import HealthCheckResponse
from waft.lattice.host_data import HostData
from waft.lattice.types import LinkDefinition

log = logging.getLogger("waft.host.providers")

RESTART_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
SHUTDOWN_GRACE_S = 2.0


class ProviderStartError(WaftError):
    """A provider reference that cannot be started, with the reason."""


@dataclass(frozen=True)
class ProviderSpec:
    """What is needed to run a provider: its command, identity and contract."""

    image_ref: str
    command: tuple[str, ...]
    public_key: str
    contract_id: str
    name: str
    claims: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


def python_provider_command(module: str) -> tuple[str, ...]:
    """`python:<module>` refs run `python -m <module>` with this host's interpreter."""
    if importlib.util.find_spec(module) is None:
        raise ProviderStartError(f"python module {module!r} is not installed (is the provider package installed?)")
    return (sys.executable, "-m", module)


@dataclass
class RunningProvider:
    spec: ProviderSpec
    link_name: str
    config_json: str
    instance_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    annotations: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None
    healthy: bool | None = None  # None until the first health check answers
    health_message: str = ""
    health_details: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0
    started_at: float = field(default_factory=time.time)
    stopping: bool = False
    task: asyncio.Task[None] | None = None

    @property
    def public_key(self) -> str:
        return self.spec.public_key

    @property
    def contract_id(self) -> str:
        return self.spec.contract_id


class ProviderSupervisor:
    def __init__(self, nc: NATS, prefix: str, make_host_data: Callable[[RunningProvider], HostData],
                 publish: Callable[[Event], Awaitable[None]],
                 links_for: Callable[[str, str], list[LinkDefinition]], *, health_interval_s: float = 10.0,
                 first_health_check_s: float = 0.25, env: Mapping[str, str] | None = None) -> None:
        self._nc = nc
        #: Variables every provider process gets on top of ours (e.g. where the model repository is).
        self.env = env if env is not None else {}
        self._prefix = prefix
        self._make_host_data = make_host_data
        self._publish = publish
        self._links_for = links_for
        self.health_interval_s = health_interval_s
        self.first_health_check_s = first_health_check_s
        self.running: dict[tuple[str, str], RunningProvider] = {}
        self._tasks: asyncio.TaskGroup | None = None

    def attach(self, tasks: asyncio.TaskGroup) -> None:
        """Supervision tasks live in the host's task group, so none outlives the host."""
        self._tasks = tasks

    async def start(self, spec: ProviderSpec, link_name: str, config_json: str = "",
                    annotations: dict[str, str] | None = None) -> RunningProvider:
        key = (spec.public_key, link_name)
        if key in self.running:
            raise ProviderStartError("Provider is already running on this host")
        assert self._tasks is not None, "supervisor used before the host started"
        provider = RunningProvider(spec, link_name, config_json, annotations=dict(annotations or {}))
        self.running[key] = provider
        await self._spawn(provider)
        provider.task = self._tasks.create_task(self._supervise(provider))
        return provider

    async def _spawn(self, provider: RunningProvider) -> None:
        env = {**os.environ, **self.env, **provider.spec.env}
        provider.process = await asyncio.create_subprocess_exec(
            *provider.spec.command, stdin=asyncio.subprocess.PIPE, env=env, start_new_session=True)
        assert provider.process.stdin is not None
        provider.process.stdin.write(self._make_host_data(provider).encode_line())
        await provider.process.stdin.drain()
        provider.started_at = time.time()
        provider.healthy, provider.health_message, provider.health_details = None, "", {}
        claims = provider.spec.claims
        await self._publish(events.provider_started(
            public_key=provider.public_key, image_ref=provider.spec.image_ref, link_name=provider.link_name,
            contract_id=provider.contract_id, instance_id=provider.instance_id, annotations=provider.annotations,
            name=provider.spec.name, issuer=claims.get("iss", ""), tags=claims.get("tags", ""),
            version=claims.get("version", "")))

    def _stopped_event(self, provider: RunningProvider, reason: str) -> Event:
        return events.provider_stopped(public_key=provider.public_key, link_name=provider.link_name,
                                       contract_id=provider.contract_id, instance_id=provider.instance_id,
                                       reason=reason)

    async def _supervise(self, provider: RunningProvider) -> None:
        """Watch one provider for life: health checks while it runs, restart when it dies."""
        failures = 0
        while not provider.stopping:
            assert provider.process is not None
            checker = asyncio.create_task(self._health_loop(provider))
            try:
                code = await provider.process.wait()
            finally:
                checker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await checker
            if provider.stopping:
                break
            lived = time.time() - provider.started_at
            failures = 0 if lived > 30 else failures + 1
            await self._publish(self._stopped_event(provider, f"exited with {code}"))
            delay = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S) - 1)]
            log.warning("provider %s (%s) exited with %s; restarting in %.1f s",
                        provider.spec.name, provider.link_name, code, delay)
            await asyncio.sleep(delay)
            if provider.stopping:
                break
            provider.restarts += 1
            provider.instance_id = str(uuid.uuid4())
            try:
                await self._spawn(provider)
            except OSError as exc:
                log.error("could not restart provider %s: %s", provider.spec.name, exc)
                await asyncio.sleep(RESTART_BACKOFF_S[-1])

    async def _health_loop(self, provider: RunningProvider) -> None:
        """Check often until the first answer (links wait on it), then every `health_interval_s`."""
        await asyncio.sleep(self.first_health_check_s)
        while True:
            healthy = await self.check_health(provider)
            await asyncio.sleep(self.health_interval_s if healthy else self.first_health_check_s * 4)

    async def check_health(self, provider: RunningProvider) -> bool:
        subject = subjects.provider_health(self._prefix, provider.public_key, provider.link_name)
        try:
            reply = await self._nc.request(subject, pack({"placeholder": True}), timeout=2)
            report = HealthCheckResponse.decode(reply.data)
        except (nats.errors.Error, TimeoutError) as exc:
            report = HealthCheckResponse(False, f"no answer to health check ({type(exc).__name__})")
        flipped = provider.healthy != report.healthy
        changed = (report.message, report.details) != (provider.health_message, provider.health_details)
        provider.healthy, provider.health_message, provider.health_details = (report.healthy, report.message,
                                                                              report.details)
        if flipped and report.healthy:
            # Links put while the process was still starting reached no one: deliver them again now
            # that it answers (a provider ignores a put it already has).
            for link in self._links_for(provider.public_key, provider.link_name):
                await self.deliver_link_put(link)
        if flipped or changed:
            make = (events.health_check_status if not flipped else
                    events.health_check_passed if report.healthy else events.health_check_failed)
            await self._publish(make(provider.public_key, provider.link_name, provider.contract_id, report))
        return report.healthy

    async def stop(self, public_key: str, link_name: str, reason: str = "normal") -> RunningProvider | None:
        provider = self.running.pop((public_key, link_name), None)
        if provider is None:
            return None
        provider.stopping = True
        subject = subjects.provider_shutdown(self._prefix, public_key, link_name)
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await self._nc.request(subject, json.dumps({"host_id": self._make_host_data(provider).host_id}).encode(),
                                   timeout=SHUTDOWN_GRACE_S)
        await self._terminate(provider)
        if provider.task is not None:
            provider.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await provider.task
        await self._publish(self._stopped_event(provider, reason))
        return provider

    async def _terminate(self, provider: RunningProvider) -> None:
        process = provider.process
        if process is None or process.returncode is not None:
            return
        if process.stdin is not None:
            process.stdin.close()  # EOF on stdin: the provider's own signal to leave
        try:
            await asyncio.wait_for(process.wait(), SHUTDOWN_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()

    async def stop_all(self) -> None:
        for public_key, link_name in list(self.running):
            await self.stop(public_key, link_name, reason="host stopping")

    async def deliver_link_put(self, link: LinkDefinition) -> None:
        subject = subjects.provider_linkdefs_put(self._prefix, link.provider_id, link.link_name)
        await self._nc.publish(subject, link.encode())

    async def deliver_link_del(self, link: LinkDefinition) -> None:
        subject = subjects.provider_linkdefs_del(self._prefix, link.provider_id, link.link_name)
        await self._nc.publish(subject, link.encode())
