"""Answers `Test.Echo` with its payload, `Test.LinkValues` with the caller's link values (msgpack),
`Test.Config` with the configuration it was started with (HostData's config_json), and `Test.Sleep`
after a delay."""

from __future__ import annotations

import asyncio
import os

from waft.lattice.codec import pack
from waft.lattice.types import LinkDefinition
from waft.provider import InvocationContext, Provider, ProviderError, operation, run
from waft_testprovider import CONTRACT_ID


class TestProvider(Provider):
    contract_id = CONTRACT_ID

    async def put_link(self, link: LinkDefinition) -> None:
        if link.values.get("refuse"):
            raise ProviderError(f"refusing link: {link.values['refuse']}")

    @operation("Test.Echo")
    async def echo(self, ctx: InvocationContext, payload: bytes) -> bytes:
        return payload

    @operation("Test.Sleep")
    async def sleep(self, ctx: InvocationContext, payload: bytes) -> bytes:
        """Answers after `payload` (ASCII milliseconds): a slow provider for deadline tests."""
        await asyncio.sleep(int(payload or b"0") / 1000)
        return b"slept"

    @operation("Test.Config")
    async def config(self, ctx: InvocationContext, payload: bytes) -> bytes:
        return (self.host_data.config_json or "").encode()

    @operation("Test.LinkValues")
    async def link_values(self, ctx: InvocationContext, payload: bytes) -> bytes:
        if ctx.link is None:
            raise ProviderError("no link")
        return pack({**ctx.link.values, "pid": str(os.getpid())})


if __name__ == "__main__":
    run(TestProvider)
