"""The one settings reader: a flag, then `WAFT_<NAME>`, then `WASMCLOUD_<NAME>`, then the default.

Every part reads its settings here so that the order is the same everywhere and the environment is
only ever read, never written: a child process gets what it needs through its own arguments or an
`env` mapping built by its parent, not through `os.environ` changed under everyone else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from waft.errors import SettingError


def setting(name: str, default: str | None = None, *, flag: str | None = None, wasmcloud: str | None = None,
            also: tuple[str, ...] = (), env: Mapping[str, str] | None = None) -> str | None:
    """The value of setting `name`: `flag` when given, else `WAFT_<NAME>`, else `WASMCLOUD_<wasmcloud>`.

    `wasmcloud` names the wasmCloud variable that means the same (e.g. `LATTICE_PREFIX`), so a user's
    wasmCloud environment keeps working; `also` names other tools' variables read last (bindle's
    `BINDLE_URL`). An empty variable counts as unset, as in wash.
    """
    if flag is not None:
        return flag
    env = os.environ if env is None else env
    names = [f"WAFT_{name.upper()}", *([f"WASMCLOUD_{wasmcloud.upper()}"] if wasmcloud else []), *also]
    return next((env[n] for n in names if env.get(n)), default)


def int_setting(name: str, default: int, *, flag: int | None = None, wasmcloud: str | None = None,
                env: Mapping[str, str] | None = None) -> int:
    if flag is not None:
        return flag
    raw = setting(name, None, wasmcloud=wasmcloud, env=env)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingError(f"WAFT_{name.upper()} must be an integer, got {raw!r}") from None


def waft_home(env: Mapping[str, str] | None = None) -> Path:
    """`$WAFT_HOME`, else `~/.waft`; created on first use."""
    home = Path(setting("home", env=env) or Path.home() / ".waft")
    home.mkdir(parents=True, exist_ok=True)
    return home


def without_credentials(url: str) -> str:
    """`nats://user:password@host:port` -> `nats://host:port`: for anything printed or shown to others."""
    if "," in url:  # several servers (a cluster's members)
        return ",".join(without_credentials(part) for part in url.split(","))
    scheme, sep, rest = url.rpartition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"
