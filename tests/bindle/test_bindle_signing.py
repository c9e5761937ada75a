"""Keyring verification and host signing, as v0.7.1 does them (checked with PyNaCl directly)."""

from __future__ import annotations

import base64
import tomllib

import pytest
import tomli_w
from bindle_support import WARPCORE_V1
from nacl.signing import SigningKey

from waft.bindle.invoice import Invoice
from waft.bindle.signing import (
    KeyRing,
    SecretKeyEntry,
    SignatureError,
    VerificationStrategy,
    cleartext,
    generate_key,
    load_or_create_host_key,
    load_secret_keys,
    save_keyring,
    sign_invoice,
)


def _signed_text(key: SecretKeyEntry, role: str = "creator") -> str:
    return sign_invoice(Invoice.from_toml(WARPCORE_V1.toml()), key, role, by="Picard <p@ufp.com>", at=7).to_toml()


def test_cleartext_matches_the_v071_layout():
    invoice = Invoice.from_toml(WARPCORE_V1.toml())
    expected = "\n".join(["me", "enterprise.com/warpcore", "1.0.0", "creator", "~", WARPCORE_V1.files[0].sha])
    assert cleartext(invoice, "me", "creator") == expected.encode()


def test_signature_is_plain_ed25519_over_the_cleartext():
    raw = SigningKey.generate()
    key = SecretKeyEntry("c", ("creator",), raw)
    invoice = Invoice.from_toml(_signed_text(key))
    [sig] = invoice.signature
    assert base64.b64decode(sig.key) == bytes(raw.verify_key)
    raw.verify_key.verify(cleartext(invoice, sig.by, "creator"), base64.b64decode(sig.signature))
    with pytest.raises(SignatureError, match="only once"):
        sign_invoice(invoice, key, "approver")


def test_key_file_round_trip(tmp_path):
    path = tmp_path / "keys.toml"
    created = load_or_create_host_key(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    doc = tomllib.loads(path.read_text())
    assert doc["version"] == "1.0" and doc["key"][0]["roles"] == ["host"]
    assert len(base64.b64decode(doc["key"][0]["keypair"])) == 64
    [loaded] = load_secret_keys(path)
    assert loaded.public_b64 == created.public_b64 == load_or_create_host_key(path).public_b64


@pytest.mark.parametrize("text,ok", [("GreedyVerification", True), ("creativeintegrity", True),
                                     ("MultipleAttestation[Creator, Host]", True),
                                     ("MultipleAttestation[Creator", False), ("Sloppy", False)])
def test_strategy_names(text, ok):
    if ok:
        VerificationStrategy.parse(text)
    else:
        with pytest.raises(ValueError):
            VerificationStrategy.parse(text)


def test_greedy_needs_known_creator():
    creator = generate_key("c", ("creator",))
    invoice = Invoice.from_toml(_signed_text(creator))
    strategy = VerificationStrategy.parse("GreedyVerification")
    with pytest.raises(SignatureError, match="cannot be verified"):
        strategy.verify(invoice, KeyRing())
    strategy.verify(invoice, KeyRing((base64.b64decode(creator.public_b64),)))
    strategy.verify(Invoice.from_toml(WARPCORE_V1.toml()), KeyRing())  # unsigned passes in v0.7.1


async def test_server_rejects_signed_invoice_with_unknown_key(server):
    reply = await server.post_invoice(_signed_text(generate_key("c", ("creator",))))
    assert reply.status == 400 and "cannot be verified" in tomllib.loads(reply.text)["error"]
    assert server.files() == set()


async def test_server_accepts_signed_invoice_with_known_key_and_adds_host(make_server, tmp_path):
    creator = generate_key("c", ("creator",))
    keyring = tmp_path / "keyring.toml"
    save_keyring(keyring, [("c", ("creator",), creator.public_b64)])
    server = await make_server(keyring=keyring)
    reply = await server.post_invoice(_signed_text(creator))
    assert reply.status == 202, reply.text
    sigs = tomllib.loads(reply.text)["invoice"]["signature"]
    assert [s["role"] for s in sigs] == ["creator", "host"]
    host = load_or_create_host_key(server.root / "signing-keys.toml")
    assert sigs[1]["key"] == host.public_b64


@pytest.mark.parametrize("field,value,needle", [
    ("key", "!!notbase64", "key is corrupt"), ("signature", "AAAA", "signature block is corrupt"),
    ("signature", base64.b64encode(bytes(64)).decode(), "cannot be verified")])
async def test_server_reports_corrupt_signatures(make_server, tmp_path, field, value, needle):
    creator = generate_key("c", ("creator",))
    keyring = tmp_path / "keyring.toml"
    save_keyring(keyring, [("c", ("creator",), creator.public_b64)])
    server = await make_server(keyring=keyring)
    doc = tomllib.loads(_signed_text(creator))
    doc["signature"][0][field] = value
    reply = await server.post_invoice(tomli_w.dumps(doc))
    assert reply.status == 400 and needle in tomllib.loads(reply.text)["error"]
    assert server.files() == set()
