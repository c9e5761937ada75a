"""The capabilities every host offers in-process (wasmCloud 0.x's builtins): logging and number generation.

They answer on the guest's worker thread without leaving the host, but only to actors whose claims
name them, as any other capability.
"""

from __future__ import annotations

import logging
import os
import uuid

from waft.host.wapc import HostCallError
from waft.lattice.codec import DecodeError, as_str, pack, unpack_map

BUILTIN_LOGGING = "wasmcloud:builtin:logging"
BUILTIN_NUMBERGEN = "wasmcloud:builtin:numbergen"
BUILTINS = (BUILTIN_LOGGING, BUILTIN_NUMBERGEN)

log = logging.getLogger("waft.host")


def call_builtin(actor_name: str, namespace: str, operation: str, payload: bytes) -> bytes:
    """Answer one builtin call; `HostCallError` for an unknown operation or a payload that is not its type."""
    try:
        if namespace == BUILTIN_LOGGING:
            if operation != "Logging.WriteLog":
                raise HostCallError(f"unknown operation {operation} for {namespace}")
            entry = unpack_map(payload, what="log entry")
            level = as_str(entry.get("level"), field="level", default="info").lower()
            text = as_str(entry.get("text"), field="text")
            log.log(logging.getLevelName(level.upper()) if level in ("debug", "info", "warn", "error")
                    else logging.INFO, "[%s] %s", actor_name, text)
            return b""
        if operation == "NumberGen.GenerateGuid":
            return pack(str(uuid.uuid4()))
        if operation == "NumberGen.Random32":
            return pack(int.from_bytes(os.urandom(4), "little"))
        if operation == "NumberGen.RandomInRange":
            bounds = unpack_map(payload, what="range")
            low, high = int(bounds.get("min", 0)), int(bounds.get("max", 0))
            if high < low:
                raise HostCallError("RandomInRange: max is below min")
            return pack(low + int.from_bytes(os.urandom(4), "little") % (high - low + 1))
    except (DecodeError, ValueError, TypeError) as exc:
        raise HostCallError(f"bad {namespace} request: {exc}") from None
    raise HostCallError(f"unknown operation {operation} for {namespace}")
