"""The HTTP listener of the httpserver provider on a free port, with the invoke function a test gives it:
the listener's own code (limits, admission, errors), no NATS and no provider process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from waft_httpserver.listener import Invoke, Listener
from waft_httpserver.settings import load_settings

ACTOR = "M" + "A" * 55


@contextlib.asynccontextmanager
async def listening(invoke: Invoke, **values: str) -> AsyncIterator[Listener]:
    listener = Listener(ACTOR, load_settings({"address": "127.0.0.1:0", **values}, env={}), invoke)
    await listener.start()
    try:
        yield listener
    finally:
        await listener.close()
