"""nkeys key pairs for every role wasmCloud uses.

PyPI `nkeys` encodes seeds and public keys but only accepts the NATS roles (operator, account, user,
server, cluster); wasmCloud adds module (`M`) and service (`V`) keys. We keep nkeys' codec (its CRC16
and base32 layout) and widen the set of prefixes, rather than write the encoding a second time.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import os
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing
import nkeys
from nkeys import crc16

from waft.errors import WaftError


class KeyError_(WaftError, ValueError):
    """A seed or public key that does not decode: wrong length, checksum, or role."""


class Role(enum.Enum):
    """Key roles and their prefix bytes (wasmcloud-protocol §6.3)."""

    ACCOUNT = ("A", 0)
    CLUSTER = ("C", 2 << 3)
    SERVER = ("N", 13 << 3)
    OPERATOR = ("O", 14 << 3)
    MODULE = ("M", 12 << 3)
    USER = ("U", 20 << 3)
    SERVICE = ("V", 21 << 3)

    @property
    def letter(self) -> str:
        return self.value[0]

    @property
    def prefix(self) -> int:
        return self.value[1]

    @classmethod
    def parse(cls, name: str) -> Role:
        """Accept wash's role names (`module`, `service`, `server`, …) and their aliases."""
        aliases = {"actor": "module", "provider": "service", "host": "server"}
        key = aliases.get(name.lower(), name.lower())
        try:
            return cls[key.upper()]
        except KeyError:
            names = ", ".join(r.name.lower() for r in cls)
            raise KeyError_(f"unknown key role {name!r}; use one of: {names}") from None

    @classmethod
    def of_public_key(cls, public_key: str) -> Role:
        for role in cls:
            if public_key.startswith(role.letter):
                return role
        raise KeyError_(f"public key {public_key[:8]}… has no known role prefix")


_PREFIX_TO_ROLE = {role.prefix: role for role in Role}


def _b32decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 8)
    try:
        return base64.b32decode(padded)
    except (binascii.Error, ValueError) as exc:
        raise KeyError_(f"not base32: {exc}") from None


def _checked(raw: bytes) -> bytes:
    body, checksum = raw[:-2], raw[-2:]
    if int.from_bytes(checksum, "little") != crc16(bytearray(body)):
        raise KeyError_("checksum mismatch")
    return body


def encode_public_key(role: Role, verify_key: bytes) -> str:
    body = bytes([role.prefix]) + verify_key
    return base64.b32encode(body + crc16(bytearray(body)).to_bytes(2, "little")).decode().rstrip("=")


def encode_seed(role: Role, raw_seed: bytes) -> str:
    header = bytes([nkeys.PREFIX_BYTE_SEED | role.prefix >> 5, (role.prefix & 31) << 3])
    body = header + raw_seed
    return base64.b32encode(body + crc16(bytearray(body)).to_bytes(2, "little")).decode().rstrip("=")


def decode_public_key(public_key: str) -> tuple[Role, bytes]:
    """Return the role and the raw 32-byte Ed25519 verify key of an encoded public key."""
    if len(public_key) != 56:
        raise KeyError_(f"public key must be 56 characters, got {len(public_key)}")
    body = _checked(_b32decode(public_key))
    role = _PREFIX_TO_ROLE.get(body[0])
    if role is None or len(body) != 33:
        raise KeyError_(f"public key {public_key[:8]}… has an unknown role byte")
    return role, body[1:]


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key pair with its role; signs with the seed, verifies with the public key."""

    role: Role
    seed: str
    public_key: str
    _signing_key: nacl.signing.SigningKey

    @classmethod
    def generate(cls, role: Role) -> KeyPair:
        return cls.from_raw_seed(role, os.urandom(32))

    @classmethod
    def from_raw_seed(cls, role: Role, raw_seed: bytes) -> KeyPair:
        signing_key = nacl.signing.SigningKey(raw_seed)
        return cls(role, encode_seed(role, raw_seed),
                   encode_public_key(role, bytes(signing_key.verify_key)), signing_key)

    @classmethod
    def from_seed(cls, seed: str) -> KeyPair:
        seed = seed.strip()
        if not seed.startswith("S"):
            raise KeyError_("a seed starts with 'S'")
        body = _checked(_b32decode(seed))
        if len(body) != 34 or body[0] & 248 != nkeys.PREFIX_BYTE_SEED:
            raise KeyError_("not a valid nkeys seed")
        prefix = (body[0] & 7) << 5 | (body[1] & 248) >> 3
        role = _PREFIX_TO_ROLE.get(prefix)
        if role is None:
            raise KeyError_(f"seed has an unknown role byte {prefix}")
        return cls.from_raw_seed(role, body[2:])

    def sign(self, data: bytes) -> bytes:
        return self._signing_key.sign(data).signature


@functools.lru_cache(maxsize=1024)
def _verify_key(public_key: str) -> nacl.signing.VerifyKey:
    """Decoding a key (base32, CRC16 in Python) cost 7 us of each invocation's 70 us verify, and a lattice
    has few signers; a bad key raises every time (exceptions are not cached)."""
    return nacl.signing.VerifyKey(decode_public_key(public_key)[1])


def verify(public_key: str, data: bytes, signature: bytes) -> bool:
    """True when `signature` is `public_key`'s Ed25519 signature of `data`."""
    key = _verify_key(public_key)
    try:
        key.verify(data, signature)
    except (nacl.exceptions.BadSignatureError, ValueError):
        return False
    return True
