"""Turning a provider reference into something the supervisor can run.

`python:<module>` runs an installed Python provider package (the embedded default); the package's
`__init__` names its contract in `CONTRACT_ID` (and may name itself in `NAME`) and must stay light,
since the host imports it to learn them. Its service key is kept in the key store, so a provider
keeps its identity across restarts and across hosts sharing `$WAFT_HOME`.
"""

from __future__ import annotations

import asyncio
import importlib

from waft.claims import keystore
from waft.claims.keys import Role
from waft.host.providers import ProviderSpec, ProviderStartError, python_provider_command


async def resolve_provider(ref: str, *, allow_latest: bool = False,
                           allowed_insecure: list[str] | None = None) -> ProviderSpec:
    if ref.startswith("python:"):
        return await asyncio.to_thread(_python_spec, ref)
    if ref.endswith((".par", ".par.gz")) or "/" in ref:
        try:
            from waft.oci.par import resolve_par_provider
        except ImportError:
            raise ProviderStartError(f"provider archives are not supported by this build: {ref}") from None
        return await resolve_par_provider(ref, allow_latest=allow_latest, allowed_insecure=allowed_insecure or [])
    raise ProviderStartError(f"unknown provider reference {ref!r}: use python:<module>, a .par file or an OCI ref")


def _python_spec(ref: str) -> ProviderSpec:
    module_name = ref.removeprefix("python:")
    command = python_provider_command(module_name)
    package = importlib.import_module(module_name)
    contract = getattr(package, "CONTRACT_ID", "")
    if not contract:
        raise ProviderStartError(f"python module {module_name!r} does not declare CONTRACT_ID")
    name = getattr(package, "NAME", module_name)
    service = keystore.load_or_create(f"{module_name}_service", Role.SERVICE)
    account = keystore.load_or_create("account", Role.ACCOUNT)
    return ProviderSpec(image_ref=ref, command=command, public_key=service.public_key, contract_id=contract,
                        name=name, claims={"iss": account.public_key, "version": getattr(package, "VERSION", "")})
