"""What a consumer checks on an invoice, and what `push` does with an id the server already has.

v0.7.1 clients believed any invoice a server sent, and `push` reused an existing id whatever it held: a
model swapped at rest, or a second model pushed under a served name, was served without a word.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from bindle_support import GREEN, RED, WARPCORE_V1

from waft.bindle.client import BindleClient, InvoiceMismatch, InvoiceRefused
from waft.bindle.ids import BindleId
from waft.bindle.invoice import Invoice
from waft.bindle.signing import (
    ConsumerPolicy,
    KeyRing,
    SignatureError,
    generate_key,
    load_or_create_host_key,
    save_keyring,
)


async def test_push_refuses_an_existing_id_with_other_content(server, tmp_path: Path) -> None:
    async with BindleClient(server.url, cache_dir=tmp_path / "cache") as client:
        await client.push(Invoice.from_toml(WARPCORE_V1.toml()), WARPCORE_V1.parcels)
        again = await client.push(Invoice.from_toml(WARPCORE_V1.toml()), WARPCORE_V1.parcels)
        assert not again.created  # the same content: reused, as before

        other = replace(WARPCORE_V1, files=[GREEN])
        with pytest.raises(InvoiceMismatch, match=r"bindle enterprise.com/warpcore/1.0.0 already exists on .* with "
                                                  rf"other content \(parcels .*{GREEN.sha[:12]}.* are on one side "
                                                  r"only\); an invoice is immutable: push a new version"):
            await client.push(Invoice.from_toml(other.toml()), other.parcels)
        described = Invoice.from_toml(WARPCORE_V1.toml().replace("test bindle", "another model"))
        with pytest.raises(InvoiceMismatch, match="another model"):
            await client.push(described, WARPCORE_V1.parcels)
        # nothing of the refused pushes reached the server
        assert (await client.get_invoice(WARPCORE_V1.id)).parcels[0].label.sha256 == RED.sha
    assert server.count("POST", f"@{GREEN.sha}") == 0


async def test_an_invoice_changed_at_rest_is_refused_by_the_consumer(make_server, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = await make_server(directory=store)
    async with BindleClient(first.url, cache_dir=tmp_path / "cache") as client:
        await client.push(Invoice.from_toml(WARPCORE_V1.toml()), WARPCORE_V1.parcels)
        await client.push(Invoice.from_toml(replace(WARPCORE_V1, version="9.0.0", files=[GREEN]).toml()),
                          {GREEN.sha: GREEN.data})
        signed = await client.get_invoice(WARPCORE_V1.id)
        assert [s.role for s in signed.signature or []] == ["host"]  # what the consumer verifies
    await first.stop()
    # someone with write access to the store points the served invoice at another (stored) parcel
    path = store / "invoices" / BindleId.parse(WARPCORE_V1.id).sha / "invoice.toml"
    text = path.read_text()
    assert RED.sha in text
    path.write_text(text.replace(RED.sha, GREEN.sha).replace(f"size = {len(RED.data)}", f"size = {len(GREEN.data)}"))
    second = await make_server(directory=store)
    async with BindleClient(second.url, cache_dir=tmp_path / "cache2") as client:
        with pytest.raises(InvoiceRefused, match=r"the host signature by .* does not verify .*changed after it "
                                                 r"was signed"):
            await client.get_invoice(WARPCORE_V1.id)
        assert (await client.get_invoice(f"{WARPCORE_V1.name}/9.0.0")).parcels[0].label.sha256 == GREEN.sha


async def test_a_keyring_and_required_signatures(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unsigned = Invoice.from_toml(WARPCORE_V1.toml())
    ConsumerPolicy().check(unsigned)  # the default: unsigned invoices pass, as in v0.7.1
    with pytest.raises(SignatureError, match="is not signed, and WAFT_BINDLE_REQUIRE_SIGNED wants a signature"):
        ConsumerPolicy(require_signed=True).check(unsigned)

    async with BindleClient(server.url, cache_dir=tmp_path / "cache") as client:
        await client.push(unsigned, WARPCORE_V1.parcels)
    host_key = load_or_create_host_key(server.config.directory / "signing-keys.toml")
    stranger = generate_key("someone else")
    keyring = tmp_path / "keyring.toml"
    save_keyring(keyring, [("someone else", ("host",), stranger.public_b64)])
    monkeypatch.setenv("WAFT_BINDLE_KEYRING", str(keyring))
    async with BindleClient(server.url, cache_dir=tmp_path / "cache") as client:  # the setting, read by the client
        with pytest.raises(InvoiceRefused, match="signed only by keys that are not in WAFT_BINDLE_KEYRING"):
            await client.get_invoice(WARPCORE_V1.id)
    save_keyring(keyring, [("the server", ("host",), host_key.public_b64)])
    async with BindleClient(server.url, cache_dir=tmp_path / "cache") as client:
        assert KeyRing.load(keyring).contains(bytes(host_key.signing_key.verify_key))
        assert (await client.get_invoice(WARPCORE_V1.id)).id == unsigned.id
    monkeypatch.setenv("WAFT_BINDLE_KEYRING", str(tmp_path / "missing.toml"))
    with pytest.raises(SignatureError, match="which is not a file"):
        BindleClient(server.url)
