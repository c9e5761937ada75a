"""Claims inside a WebAssembly module: the `jwt` custom section and the module hash.

wascap appends the token as the last custom section, named `jwt` (0.8) or `wasmcloud_jwt` (0.9+),
and hashes the module with that section removed (wasmcloud-protocol §6.2). We walk the section list
ourselves: it is a dozen lines of LEB128, and it keeps every other byte exactly as it was.
"""

from __future__ import annotations

import hashlib

from waft.claims.jwt import ClaimsError

MAGIC = b"\x00asm\x01\x00\x00\x00"
CLAIMS_SECTIONS = ("jwt", "wasmcloud_jwt")


def _read_leb(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ClaimsError("truncated wasm module (LEB128 runs past the end)")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 35:
            raise ClaimsError("malformed wasm module (LEB128 too long)")


def _leb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def sections(module: bytes) -> list[tuple[int, int, int, str | None]]:
    """(id, start, end, custom name) of each section, `start`..`end` covering id byte to payload end."""
    if not module.startswith(MAGIC):
        raise ClaimsError("not a WebAssembly module (bad magic or version)")
    found = []
    pos = len(MAGIC)
    while pos < len(module):
        start = pos
        section_id = module[pos]
        size, payload = _read_leb(module, pos + 1)
        end = payload + size
        if end > len(module):
            raise ClaimsError("truncated wasm module (section runs past the end)")
        name = None
        if section_id == 0:
            name_len, name_pos = _read_leb(module, payload)
            name = module[name_pos:name_pos + name_len].decode("utf-8", "replace")
        found.append((section_id, start, end, name))
        pos = end
    return found


def strip_claims(module: bytes) -> bytes:
    """The module without any claims section: what wascap hashes."""
    kept = bytearray(MAGIC)
    for section_id, start, end, name in sections(module):
        if section_id == 0 and name in CLAIMS_SECTIONS:
            continue
        kept += module[start:end]
    return bytes(kept)


def module_hash(module: bytes) -> str:
    return hashlib.sha256(strip_claims(module)).hexdigest().upper()


def read_token(module: bytes) -> str | None:
    for section_id, start, end, name in sections(module):
        if section_id == 0 and name in CLAIMS_SECTIONS:
            _, payload = _read_leb(module, start + 1)
            name_len, name_pos = _read_leb(module, payload)
            return module[name_pos + name_len:end].decode("utf-8", "replace")
    return None


def embed_token(module: bytes, token: str, section: str = "jwt") -> bytes:
    """Replace any claims section with `token`, appended last as wascap does."""
    name = section.encode()
    content = _leb(len(name)) + name + token.encode()
    return strip_claims(module) + b"\x00" + _leb(len(content)) + content
