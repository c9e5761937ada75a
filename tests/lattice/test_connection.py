"""waft.lattice.connection against a real nats-server that freezes (SIGSTOP), as a hung cluster member does.

A request waiting when the client notices the frozen server must fail with ConnectionLostInFlight, not
wait out its timeout; a request made after the reconnect must be answered as usual. The first test also
pins the nats-py internals `fail_in_flight` reads: were they to change, the request would time out and
the test would fail.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg

from waft.embedded_nats import EmbeddedNats
from waft.lattice.connection import ConnectionLostInFlight, connect, fail_in_flight, server_caught_up

pytestmark = pytest.mark.timeout(120)


async def test_a_request_waiting_on_a_frozen_server_fails_at_once_and_the_next_one_is_answered(tmp_path: Path):
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    try:
        received = asyncio.Event()
        responder = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        client = await connect(server.url, None, name="test client")
        try:
            async def hold(msg: Msg) -> None:  # answers the second request only
                if received.is_set():
                    await msg.respond(b"answer")
                received.set()

            await responder.subscribe("work", cb=hold)
            await server_caught_up(responder)
            # a timeout far beyond the test's own: only the lost connection can end this request
            waiting = asyncio.create_task(client.request("work", b"first", timeout=3600))
            await asyncio.wait_for(received.wait(), 30)
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                with pytest.raises(ConnectionLostInFlight):
                    await asyncio.wait_for(waiting, 60)
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            for _ in range(120):  # both clients reconnect after the freeze; ask until the responder is back
                try:
                    reply = await client.request("work", b"second", timeout=1)
                    break
                except (nats.errors.TimeoutError, nats.errors.NoRespondersError, ConnectionLostInFlight):
                    await asyncio.sleep(0.25)
            else:
                raise AssertionError("no answer after the server came back")
            assert reply.data == b"answer"
        finally:
            await client.close()
            await responder.close()
    finally:
        server.stop()


async def test_fail_in_flight_touches_nothing_on_a_connection_without_requests(tmp_path: Path):
    async with EmbeddedNats(tmp_path / "nats") as server:
        client = await connect(server.url, None, name="idle client")
        try:
            assert fail_in_flight(client) == 0
            await client.publish("x", b"still usable")
            await server_caught_up(client)
        finally:
            await client.close()
