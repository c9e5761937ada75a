"""A provider that answers `Test.Echo` with its payload: the far end of the lattice round-trip benchmark."""

from __future__ import annotations

from waft.provider import InvocationContext, Provider, operation, run

CONTRACT_ID = "waft:test"
NAME = "Bench echo provider"


class EchoProvider(Provider):
    contract_id = CONTRACT_ID

    @operation("Test.Echo")
    async def echo(self, ctx: InvocationContext, payload: bytes) -> bytes:
        return payload


if __name__ == "__main__":
    run(EchoProvider)
