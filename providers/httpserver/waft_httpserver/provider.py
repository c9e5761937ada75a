"""The `wasmcloud:httpserver` provider: a listener per linked actor, torn down with its link.

Links are the whole configuration, as in wasmCloud: putting a link opens the address in its values,
deleting it closes that address. A link that cannot listen (port taken, bad TLS files, bad values) is
refused with a ProviderError naming the reason; the SDK then reports it through health, and the
other links keep serving.
"""

from __future__ import annotations

import asyncio
import logging

from waft.lattice import subjects
from waft.lattice.host_data import HostData
from waft.lattice.types import LinkDefinition
from waft.provider import Provider, ProviderError
from waft_httpserver import CONTRACT_ID
from waft_httpserver.accesslog import AccessPublisher, set_access_publisher
from waft_httpserver.listener import Invoke, Listener, ListenerError
from waft_httpserver.settings import SettingsError, load_settings

OPERATION = "HttpServer.HandleRequest"
log = logging.getLogger("waft.httpserver")


class HttpServerProvider(Provider):
    contract_id = CONTRACT_ID

    def __init__(self, host_data: HostData) -> None:
        super().__init__(host_data)
        self.listeners: dict[str, Listener] = {}
        self.access: AccessPublisher | None = None

    async def on_start(self) -> None:
        assert self.nc is not None
        self.access = AccessPublisher(self.nc.publish, subjects.access_log(self.host_data.lattice_rpc_prefix))
        set_access_publisher(self.access)

    async def put_link(self, link: LinkDefinition) -> None:
        try:
            settings = load_settings(link.values, structured_logging=self.host_data.enable_structured_logging)
        except SettingsError as exc:
            raise ProviderError(f"httpserver link from {link.actor_id}: {exc}") from None
        for other in self.listeners.values():
            if other.settings.port == settings.port and settings.port != 0:
                raise ProviderError(f"cannot listen on {settings.address} for {link.actor_id}: port {settings.port} "
                                    f"is already in use by this provider's link from {other.actor_id}")
        listener = Listener(link.actor_id, settings, self._invoker(link.actor_id))
        try:
            await listener.start()
        except ListenerError as exc:
            raise ProviderError(f"{exc}; link from {link.actor_id} not served") from None
        self.listeners[link.actor_id] = listener
        self._log_listening(listener)

    def _invoker(self, actor_id: str) -> Invoke:
        async def invoke(payload: bytes, timeout: float) -> bytes:
            return await self.call_actor(actor_id, OPERATION, payload, timeout=timeout)

        return invoke

    def _log_listening(self, listener: Listener) -> None:
        s = listener.settings
        log.info(
            "listening on %s for actor %s (max body %d B, timeout %g s, max concurrent %d)",
            listener.address, listener.actor_id, s.max_body_bytes, s.timeout_s, s.max_concurrent)

    async def delete_link(self, link: LinkDefinition) -> None:
        listener = self.listeners.pop(link.actor_id, None)
        if listener is not None:
            await listener.close()

    async def health(self) -> tuple[bool, str]:
        if not self.listeners:
            return True, "healthy: no links yet"
        addresses = ", ".join(sorted(listener.address for listener in self.listeners.values()))
        return True, f"healthy: serving {addresses}"

    async def on_shutdown(self) -> None:
        listeners, self.listeners = list(self.listeners.values()), {}
        async with asyncio.TaskGroup() as tasks:
            for listener in listeners:
                tasks.create_task(listener.close())
        if self.access is not None:
            await self.access.flush()  # the last interval's records, before the connection drains
