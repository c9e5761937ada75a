"""Where Waft keeps its state and how settings resolve: CLI flag, then `WAFT_*` variable, then default."""

from __future__ import annotations

import os
from pathlib import Path


def waft_home() -> Path:
    """`$WAFT_HOME`, else `~/.waft`; created on first use."""
    home = Path(os.environ.get("WAFT_HOME") or Path.home() / ".waft")
    home.mkdir(parents=True, exist_ok=True)
    return home


def setting(name: str, default: str) -> str:
    """The `WAFT_<NAME>` environment variable, or `default`."""
    return os.environ.get(f"WAFT_{name.upper()}", default)


def int_setting(name: str, default: int) -> int:
    raw = setting(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"WAFT_{name.upper()} must be an integer, got {raw!r}") from None


def without_credentials(url: str) -> str:
    """`nats://user:password@host:port` -> `nats://host:port`: for anything printed or shown to others."""
    scheme, sep, rest = url.rpartition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"
