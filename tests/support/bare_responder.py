"""A bare nats-py echo responder in its own process: the baseline a provider process is held against."""

from __future__ import annotations

import asyncio
import sys

import nats

from waft.lattice.connection import server_caught_up


async def main(url: str, subject: str) -> None:
    nc = await nats.connect(url)

    async def echo(msg) -> None:  # type: ignore[no-untyped-def]
        await msg.respond(msg.data)

    await nc.subscribe(subject, cb=echo)
    await server_caught_up(nc)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
