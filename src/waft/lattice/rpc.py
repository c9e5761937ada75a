"""Sending and receiving invocations: signing, chunking, timeouts and error mapping, in one place.

The host and every provider hold one `LatticeRpc`. Senders call `invoke`; receivers call `receive`
on each message and `respond` with the result, and never touch chunking or claims themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass, field

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from waft.claims.keys import KeyPair
from waft.errors import WaftError
from waft.lattice import subjects
from waft.lattice.chunking import ChunkStore, MissingChunk, response_key
from waft.lattice.codec import DecodeError
from waft.lattice.connection import ConnectionLostInFlight
from waft.lattice.signing import ForgedInvocation, sign_invocation, verify_invocation
from waft.lattice.types import Invocation, InvocationResponse, WasmCloudEntity

DEFAULT_RPC_TIMEOUT_S = 2.0
#: wasmbus-rpc gives chunked calls 13 s more, since the object store round trip is slow (§2.5).
CHUNKED_EXTRA_TIMEOUT_S = 13.0
#: Headroom under the server's max payload for the invocation envelope and claims.
ENVELOPE_HEADROOM = 16 * 1024


class RpcError(WaftError):
    """A call that produced no answer: the target's error, a timeout, or nobody listening.

    `kind` is the host error kind (waft.host.wapc.HOST_ERROR_KINDS): the responder's own (an
    InvocationResponse's `error_kind`), else `timeout`, `not_running` (no responders) or `failed`."""

    def __init__(self, message: str, *, timeout: bool = False, no_responders: bool = False,
                 connection_lost: bool = False, kind: str | None = None) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.no_responders = no_responders
        #: The lattice connection went while waiting (waft.lattice.connection): the call may have run.
        self.connection_lost = connection_lost
        self.kind = kind or ("timeout" if timeout else "not_running" if no_responders else "failed")


class InvocationRejected(WaftError):
    """A received invocation that must not run: malformed, forged, or its payload lost."""


@dataclass
class LatticeConfig:
    prefix: str
    cluster_key: KeyPair
    host_id: str
    cluster_issuers: Collection[str] = field(default_factory=set)
    rpc_timeout_s: float = DEFAULT_RPC_TIMEOUT_S

    def issuers(self) -> set[str]:
        """Our own cluster key is always trusted, as the 0.x host adds it (§5.3)."""
        return {*self.cluster_issuers, self.cluster_key.public_key}


class LatticeRpc:
    def __init__(self, nc: NATS, config: LatticeConfig) -> None:
        self.nc = nc
        self.config = config
        self.chunks = ChunkStore(nc, config.prefix)

    @property
    def chunk_threshold(self) -> int:
        return max(1024, self.nc.max_payload - ENVELOPE_HEADROOM)

    def subject_for(self, target: WasmCloudEntity) -> str:
        if target.link_name:
            return subjects.provider_rpc(self.config.prefix, target.public_key, target.link_name)
        return subjects.actor_rpc(self.config.prefix, target.public_key)

    async def invoke(self, origin: WasmCloudEntity, target: WasmCloudEntity, operation: str, msg: bytes,
                     *, timeout: float | None = None) -> bytes:
        """Send one invocation and return the target's answer; raise RpcError otherwise."""
        invocation = Invocation(origin=origin, target=target, operation=operation, msg=msg,
                                host_id=self.config.host_id)
        budget = timeout if timeout is not None else self.config.rpc_timeout_s
        if len(msg) > self.chunk_threshold:
            sign_invocation(invocation, self.config.cluster_key, payload=msg)
            await self.chunks.put(invocation.id, msg)
            invocation.msg = b""
            invocation.content_length = len(msg)
            budget += CHUNKED_EXTRA_TIMEOUT_S
        else:
            sign_invocation(invocation, self.config.cluster_key)
        subject = self.subject_for(target)
        try:
            reply = await self.nc.request(subject, invocation.encode(), timeout=budget)
        except nats.errors.NoRespondersError:
            raise RpcError(f"no one is serving {target.public_key} ({operation}): is it running?",
                           no_responders=True) from None
        except ConnectionLostInFlight:
            raise RpcError(f"the lattice connection was lost while {operation} was in flight (it may have run); "
                           "retry shortly", connection_lost=True, kind="not_running") from None
        except nats.errors.TimeoutError:
            raise RpcError(f"Failed to perform RPC call: request timeout after {budget:g} s ({operation})",
                           timeout=True) from None
        except nats.errors.MaxPayloadError as exc:
            raise RpcError(f"invocation of {operation} is too large for the lattice: {exc}", kind="too_large") from None
        try:
            response = InvocationResponse.decode(reply.data)
        except DecodeError as exc:
            raise RpcError(f"unreadable response to {operation}: {exc}") from None
        if response.error is not None:
            raise RpcError(response.error, kind=response.error_kind)
        if response.is_chunked:
            try:
                return await self.chunks.take(response_key(invocation.id), response.content_length or 0)
            except MissingChunk as exc:
                raise RpcError(str(exc)) from None
        return response.msg

    async def receive(self, data: bytes) -> Invocation:
        """Decode, dechunk and verify an inbound invocation; `msg` holds the whole payload after.

        A chunked payload is deleted from object store only once the invocation proved genuine:
        anyone can name an invocation id, and a forged one must not destroy the real one's payload."""
        try:
            invocation = Invocation.decode(data)
        except DecodeError as exc:
            raise InvocationRejected(str(exc)) from None
        payload = None
        if invocation.is_chunked:
            try:
                payload = await self.chunks.get(invocation.id, invocation.content_length or 0)
            except MissingChunk as exc:
                raise InvocationRejected(str(exc)) from None
        try:
            verify_invocation(invocation, self.config.issuers(), payload)
        except ForgedInvocation as exc:
            raise InvocationRejected(str(exc)) from None
        if payload is not None:
            await self.chunks.delete(invocation.id)
            invocation.msg = payload
            invocation.content_length = None
        return invocation

    async def respond(self, request: Msg, invocation_id: str, msg: bytes = b"", *, error: str | None = None,
                      error_kind: str | None = None, instance_id: str | None = None) -> None:
        """Reply to `request`, moving a large answer into object store first; `error_kind` says what kind of
        failure `error` is (RpcError.kind on the caller's side)."""
        if not request.reply:
            return
        response = InvocationResponse(invocation_id=invocation_id, msg=msg, error=error,
                                      error_kind=error_kind if error is not None else None,
                                      instance_id=instance_id)
        if error is None and len(msg) > self.chunk_threshold:
            await self.chunks.put(response_key(invocation_id), msg)
            response.msg = b""
            response.content_length = len(msg)
        await self.nc.publish(request.reply, response.encode())

    async def reject(self, request: Msg, data: bytes, error: str) -> None:
        """Answer an invocation we could not even accept, echoing its id when it is readable."""
        invocation_id = ""
        try:
            invocation_id = Invocation.decode(data).id
        except DecodeError:
            pass
        await self.respond(request, invocation_id, error=error)


async def wait_closed(nc: NATS, timeout: float = 5.0) -> None:
    """Drain a connection within a bound: shutdown must never hang on a dead server."""
    try:
        await asyncio.wait_for(nc.drain(), timeout)
    except (TimeoutError, nats.errors.Error):
        await nc.close()
