"""Turning a provider reference into something the supervisor can run.

`python:<module>` runs an installed Python provider package (the embedded default); the package's
`__init__` names its contract in `CONTRACT_ID` (and may name itself in `NAME`) and must stay light,
since the host imports it to learn them. Only modules in an allow-list may be named (the host's
`python_providers`, else the `python_providers` setting, else `DEFAULT_PYTHON_PROVIDERS`): whoever can
send a control command must not be able to run any module importable on the host (`python:http.server`,
a test double left on the path). Its service key is kept in the key store, so a provider
keeps its identity across restarts and across hosts sharing `$WAFT_HOME`.
"""

from __future__ import annotations

import asyncio
import importlib

from waft.claims import keystore
from waft.claims.keys import Role
from waft.claims.trust import TrustPolicy
from waft.config import setting
from waft.host.providers import ProviderSpec, ProviderStartError, python_provider_command

#: The Python providers Waft ships; tests add their doubles through the setting, never by default.
DEFAULT_PYTHON_PROVIDERS = ("waft_httpserver", "waft_mlinference")


def allowed_python_providers(configured: list[str] | None = None) -> list[str]:
    """`configured` when given, else `WAFT_PYTHON_PROVIDERS` (comma-separated), else the shipped providers."""
    if configured is not None:
        return list(configured)
    raw = setting("python_providers")
    if raw is None:
        return list(DEFAULT_PYTHON_PROVIDERS)
    return [name.strip() for name in raw.split(",") if name.strip()]


async def resolve_provider(ref: str, *, allow_latest: bool = False, allowed_insecure: list[str] | None = None,
                           python_providers: list[str] | None = None,
                           trust: TrustPolicy | None = None) -> ProviderSpec:
    if ref.startswith("python:"):
        module_name = ref.removeprefix("python:")
        allowed = allowed_python_providers(python_providers)
        if module_name not in allowed:
            raise ProviderStartError(f"python module {module_name!r} is not an allowed provider (allowed: "
                                     f"{', '.join(allowed) or 'none'}; set WAFT_PYTHON_PROVIDERS to change)")
        return await asyncio.to_thread(_python_spec, ref)
    if ref.endswith((".par", ".par.gz")) or "/" in ref:
        try:
            from waft.oci.par import resolve_par_provider
        except ImportError:
            raise ProviderStartError(f"provider archives are not supported by this build: {ref}") from None
        return await resolve_par_provider(ref, allow_latest=allow_latest, allowed_insecure=allowed_insecure or [],
                                          trust=trust)
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
