"""Invoice signatures as bindle v0.7.1 makes and checks them (Ed25519 via PyNaCl).

The server signs every invoice it accepts with its host key, and checks the signatures already on it
against a keyring with one of v0.7.1's verification strategies. The cleartext and the strategy rules
follow the v0.7.1 code, not signing-spec.md (which, e.g., claims `at` is signed: it is not), because
interoperating with real clients and stored invoices is what matters.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from waft.bindle.invoice import SIGNATURE_ROLES, Invoice, Signature
from waft.errors import WaftError

DEFAULT_HOST_LABEL = "Default host key"


class SignatureError(WaftError, ValueError):
    """Verification or signing failed; the text matches v0.7.1's `SignatureError` messages."""


def cleartext(invoice: Invoice, by: str, role: str) -> bytes:
    """`by`, name, version, role, `~`, then each parcel sha, joined by newlines (no trailing one)."""
    lines = [by, invoice.name, invoice.version, role, "~"]
    lines += [p.label.sha256 for p in invoice.parcels]
    return "\n".join(lines).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


# ------------------------------------------------------------------------------------------ key files

@dataclass(frozen=True)
class SecretKeyEntry:
    label: str
    roles: tuple[str, ...]
    signing_key: SigningKey

    @property
    def public_b64(self) -> str:
        return _b64(bytes(self.signing_key.verify_key))


def generate_key(label: str, roles: tuple[str, ...] = ("host",)) -> SecretKeyEntry:
    return SecretKeyEntry(label, roles, SigningKey.generate())


def load_secret_keys(path: Path) -> list[SecretKeyEntry]:
    """A v0.7.1 SecretKeyFile: `version = "1.0"`, `[[key]]` with `label`, `keypair` (secret||public), `roles`."""
    data = tomllib.loads(path.read_text("utf-8"))
    entries = []
    for item in data.get("key", []):
        raw = _unb64(item["keypair"])
        if len(raw) != 64:
            raise SignatureError(f"key is corrupt for `{item.get('label', '?')}`")
        entries.append(SecretKeyEntry(item["label"], tuple(r.lower() for r in item.get("roles", [])),
                                      SigningKey(raw[:32])))
    return entries


def save_secret_keys(path: Path, entries: list[SecretKeyEntry]) -> None:
    """Write with mode 0600: these are private keys."""
    doc = {"version": "1.0", "key": [
        {"label": e.label, "keypair": _b64(bytes(e.signing_key) + bytes(e.signing_key.verify_key)),
         "roles": list(e.roles)} for e in entries]}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(tomli_w.dumps(doc))


def load_or_create_host_key(path: Path) -> SecretKeyEntry:
    """The first key with the host role; like v0.7.1 the file is created with one if it is absent."""
    if not path.exists():
        entry = generate_key(DEFAULT_HOST_LABEL, ("host",))
        save_secret_keys(path, [entry])
        return entry
    for entry in load_secret_keys(path):
        if "host" in entry.roles:
            return entry
    raise SignatureError("no suitable key for signing data")


@dataclass(frozen=True)
class KeyRing:
    """Public keys the server trusts (`version = "1.0"`, `[[key]]` with `label`, `roles`, `key`)."""

    keys: tuple[bytes, ...] = ()

    @classmethod
    def load(cls, path: Path | None) -> KeyRing:
        if path is None or not path.exists():
            return cls()
        data = tomllib.loads(path.read_text("utf-8"))
        return cls(tuple(_unb64(item["key"]) for item in data.get("key", [])))

    def contains(self, public_key: bytes) -> bool:
        return public_key in self.keys


def save_keyring(path: Path, entries: list[tuple[str, tuple[str, ...], str]]) -> None:
    doc = {"version": "1.0", "key": [{"label": label, "roles": list(roles), "key": key}
                                     for label, roles, key in entries]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(doc), "utf-8")


# ---------------------------------------------------------------------------------------------- sign

def sign_invoice(invoice: Invoice, key: SecretKeyEntry, role: str, *, by: str | None = None,
                 at: int | None = None) -> Invoice:
    """Append a signature; a key may sign an invoice only once (v0.7.1 `DuplicateSignature`)."""
    if role not in SIGNATURE_ROLES:
        raise SignatureError(f"unknown signature role `{role}`")
    public = key.public_b64
    if any(s.key == public for s in invoice.signature or []):
        raise SignatureError("duplicate signature: a key may sign an invoice only once")
    signer = by or key.label
    signed = key.signing_key.sign(cleartext(invoice, signer, role)).signature
    sig = Signature(by=signer, signature=_b64(signed), key=public, role=role,
                    at=int(time.time()) if at is None else at)
    return invoice.with_changes(signature=[*(invoice.signature or []), sig])


# -------------------------------------------------------------------------------------------- verify

# strategy -> (target roles, verify all signatures, every target key known, every target role present)
_STRATEGIES: dict[str, tuple[tuple[str, ...], bool, bool, bool]] = {
    "greedyverification": (("creator",), True, True, True),
    "creativeintegrity": (("creator",), False, True, True),
    "authoritativeintegrity": (("creator", "approver"), False, False, False),
    "exhaustiveverification": (("creator", "approver", "host", "proxy"), True, True, False),
}


@dataclass(frozen=True)
class VerificationStrategy:
    roles: tuple[str, ...]
    all_valid: bool
    all_verified: bool
    all_roles: bool

    @classmethod
    def parse(cls, text: str = "GreedyVerification") -> VerificationStrategy:
        """Case-insensitive names as v0.7.1, incl. `MultipleAttestation[Creator, Host]`."""
        norm = text.strip().lower()
        head, _, rest = norm.partition("[")
        if head in _STRATEGIES:
            return cls(*_STRATEGIES[head])
        if head in ("multipleattestation", "multipleattestationgreedy"):
            if not rest.endswith("]"):
                raise ValueError("Missing closing ']' on roles")
            roles = tuple(r.strip() for r in rest[:-1].split(","))
            if not all(r in SIGNATURE_ROLES for r in roles):
                raise ValueError(f"unknown role in strategy {text!r}")
            return cls(roles, head.endswith("greedy"), True, True)
        raise ValueError(f"Unknown verification strategy {text!r}")

    def verify(self, invoice: Invoice, keyring: KeyRing) -> None:
        """Raise SignatureError unless the invoice passes. No signatures at all passes (v0.7.1)."""
        if not invoice.signature:
            return
        known_key = False
        filled: set[str] = set()
        for sig in invoice.signature:
            target = sig.role in self.roles
            if not self.all_valid and not target:
                continue
            public = _verify_one(sig, cleartext(invoice, sig.by, sig.role))
            if not target and not self.all_verified:
                continue
            if self.all_roles:
                filled.add(sig.role)
            if keyring.contains(public):
                known_key = True
            elif self.all_verified:
                raise SignatureError("signatures `strategy requires that all signatures for role(s) must be "
                                     "verified` cannot be verified")
        if not known_key:
            raise SignatureError("none of the signatures are made with a known key")
        if self.all_roles:
            for role in self.roles:
                if role not in filled:
                    raise SignatureError(f"signatures `No signature found for role {role.capitalize()}` "
                                         "cannot be verified")


def _verify_one(sig: Signature, message: bytes) -> bytes:
    try:
        public = _unb64(sig.key)
        verify_key = VerifyKey(public)
    except (binascii.Error, ValueError, TypeError):
        raise SignatureError(f"key is corrupt for `{sig.key}`") from None
    try:
        block = _unb64(sig.signature)
    except (binascii.Error, ValueError):
        raise SignatureError(f"signature block is corrupt for key {sig.key}") from None
    if len(block) != 64:
        raise SignatureError(f"signature block is corrupt for key {sig.key}")
    try:
        verify_key.verify(message, block)
    except BadSignatureError:
        raise SignatureError(f"signatures `{sig.key}` cannot be verified") from None
    return public


# ------------------------------------------------------------------------------------ the consumer

@dataclass(frozen=True)
class ConsumerPolicy:
    """What a client (the mlinference provider, `waft bindle get`) checks on every invoice it reads.

    v0.7.1 clients trusted whatever the server sent. Here every signature an invoice carries must verify (an
    invoice edited at rest or on the way without re-signing is refused), `require_signed` refuses unsigned
    invoices, and a `keyring` makes one signature by a known key necessary, so a server that re-signs a
    swapped invoice with its own fresh key is refused too."""

    require_signed: bool = False
    keyring: KeyRing | None = None

    @classmethod
    def from_settings(cls) -> ConsumerPolicy:
        from waft.config import setting

        required = (setting("bindle_require_signed", "") or "").strip().lower() in ("1", "true", "yes")
        keyring_path = setting("bindle_keyring")
        keyring = None
        if keyring_path:
            path = Path(keyring_path)
            if not path.is_file():
                raise SignatureError(f"WAFT_BINDLE_KEYRING names {path}, which is not a file")
            keyring = KeyRing.load(path)
        return cls(required, keyring)

    def check(self, invoice: Invoice) -> None:
        """Raise SignatureError naming the invoice and what failed."""
        what = f"invoice {invoice.name}/{invoice.version}"
        if not invoice.signature:
            if self.require_signed or self.keyring is not None:
                wants = "WAFT_BINDLE_KEYRING" if self.keyring is not None else "WAFT_BINDLE_REQUIRE_SIGNED"
                raise SignatureError(f"{what} is not signed, and {wants} wants a signature")
            return
        known = False
        for sig in invoice.signature:
            try:
                public = _verify_one(sig, cleartext(invoice, sig.by, sig.role))
            except SignatureError as exc:
                raise SignatureError(f"{what}: the {sig.role} signature by {sig.by!r} does not verify ({exc}); "
                                     "the invoice was changed after it was signed") from None
            known = known or (self.keyring is not None and self.keyring.contains(public))
        if self.keyring is not None and not known:
            raise SignatureError(f"{what} is signed only by keys that are not in WAFT_BINDLE_KEYRING")
