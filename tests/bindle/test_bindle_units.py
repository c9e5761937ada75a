"""Pure pieces, each against an independent reference: ids (hashlib), the schema (tomllib), version
ranges (v0.7.1's unit-test expectations), Accept negotiation, and the store's write exclusivity."""

from __future__ import annotations

import asyncio
import hashlib
import tomllib

import pytest

from waft.bindle.ids import BindleId, InvalidId
from waft.bindle.invoice import Invoice, InvoiceError, Label
from waft.bindle.search import version_matches
from waft.bindle.storage import Exists, FileStore, WriteInProgress
from waft.bindle.wire import pick_format


def test_id_sha_matches_reference_value():
    bid = BindleId.parse("enterprise.com/warpcore/1.0.0")
    assert (bid.name, bid.version) == ("enterprise.com/warpcore", "1.0.0")
    assert bid.sha == "1927aefa8fdc8327499e918300e2e49ecb271321530cc5881fcd069ca8372dcd"
    assert bid.sha == hashlib.sha256(b"enterprise.com/warpcore/1.0.0").hexdigest()


@pytest.mark.parametrize("text,name,version", [
    ("example.com/a/b/foo/1.2.3", "example.com/a/b/foo", "1.2.3"),
    ("foo/1.0.0-rc.1", "foo", "1.0.0-rc.1"), ("foo/1.0.0+build.5", "foo", "1.0.0+build.5"),
    ("mobilenetv2-7/0.1.0", "mobilenetv2-7", "0.1.0"),
])
def test_id_parsing(text, name, version):
    bid = BindleId.parse(text)
    assert (bid.name, bid.version, str(bid)) == (name, version, text)


@pytest.mark.parametrize("text", ["foo", "foo/", "/1.0.0", "foo/1.0", "foo/01.0.0", "foo/bar", "../x/1.0.0"])
def test_bad_ids(text):
    with pytest.raises(InvalidId):
        BindleId.parse(text)


SIMPLE = """
bindleVersion = "1.0.0"
[bindle]
name = "mybindle"
version = "0.1.0"
authors = ["Matt Butcher <matt.butcher@microsoft.com>"]
description = "My first bindle"
[annotations]
myname = "myvalue"
[[parcel]]
label.sha256 = "e1706ab0a39ac88094b6d54a3f5cdba41fe5a901"
label.mediaType = "text/html"
label.name = "myparcel.html"
label.size = 248098
label.origin = "https://example.com/x.html"
[[parcel]]
label.sha256 = "098fa798779ac88094b6d54a3f5cdba41fe5a901"
label.mediaType = "text/css"
label.name = "style.css"
label.size = 2498
label.feature.wasm.ready = "true"
label.annotations.note = "hello"
"""

FULL = SIMPLE + """
[[group]]
name = "server"
satisfiedBy = "allOf"
[[group]]
name = "cli"
satisfiedBy = "oneOf"
required = true
[[group]]
name = "utility"
satisfiedBy = "optional"
[[parcel]]
label.sha256 = "5b992e90b71d5fadab3cd3777230ef370df75f5b"
label.mediaType = "application/x-javascript"
label.name = "cli.js"
label.size = 1342
conditions.memberOf = ["cli"]
conditions.requires = ["utility"]
"""

ALT = """
bindleVersion = "1.0.0"
[bindle]
name = "alt"
version = "1.0.0"
[[parcel]]
[parcel.label]
sha256 = "abc123"
mediaType = "text/plain"
name = "a.txt"
size = 3
[parcel.conditions]
memberOf = ["g"]
"""


@pytest.mark.parametrize("text", [SIMPLE, FULL, ALT], ids=["simple", "full", "alt-format"])
def test_spec_examples_parse_and_round_trip(text):
    invoice = Invoice.from_toml(text)
    assert tomllib.loads(invoice.to_toml()) == tomllib.loads(text)
    assert Invoice.from_json(invoice.to_json()) == invoice


def test_full_invoice_semantics():
    invoice = Invoice.from_toml(FULL)
    assert [g.satisfied_by for g in invoice.group] == ["allOf", "oneOf", "optional"]
    cli = invoice.parcels[-1]
    assert cli.member_of("cli") and not cli.member_of("server") and cli.conditions.requires == ["utility"]
    assert invoice.parcels[1].label.feature == {"wasm": {"ready": "true"}}
    assert invoice.label_for("5b992e90b71d5fadab3cd3777230ef370df75f5b").name == "cli.js"
    assert invoice.label_for("nope") is None


def test_unknown_keys_in_bindle_table_are_ignored_like_v071():
    invoice = Invoice.from_toml(ALT.replace('version = "1.0.0"', 'version = "1.0.0"\nhomepage = "x"'))
    assert "homepage" not in invoice.to_toml()


def test_yanked_signature_uses_camel_case():
    text = ALT + '\n[[yankedSignature]]\nby = "a"\nsignature = "b"\nkey = "c"\nrole = "host"\nat = 1\n'
    invoice = Invoice.from_toml(text)
    assert invoice.yanked_signature[0].by == "a"
    assert "yankedSignature" in tomllib.loads(invoice.to_toml())
    with pytest.raises(InvoiceError, match="yanked_signature"):
        Invoice.from_toml(text.replace("yankedSignature", "yanked_signature"))


@pytest.mark.parametrize("req,ok", [("= 1.2.3", True), ("1.2.3", True), ("^1.1", True), ("~1.2", True),
                                    ("2", False), ("%^&%^&%", False), ("<1.2.3", False), (">1.2.2, <1.2.4", True)])
def test_version_requirements_from_v071_unit_tests(req, ok):
    assert version_matches(req, "1.2.3") is ok


def test_prerelease_needs_a_prerelease_comparator_on_the_same_version():
    assert version_matches("^1.2.3-alpha", "1.2.3-beta")
    assert not version_matches("^1.2.0", "1.2.3-beta")
    assert not version_matches(">=1.0.0", "2.0.0-rc.1")
    assert version_matches("1.0.0-rc.1", "1.0.0-rc.1")


@pytest.mark.parametrize("accept,fmt", [("application/json", "application/json"), ("*/*", "application/toml"),
                                        ("", "application/toml"), ("garbage, text/json", "application/json")])
def test_accept(accept, fmt):
    assert pick_format(accept) == fmt


async def test_concurrent_creates_exactly_one_wins(tmp_path):
    store = FileStore(tmp_path)
    invoice = Invoice.from_toml(ALT)
    results = await asyncio.gather(*(asyncio.to_thread(store.create_invoice, invoice) for _ in range(8)),
                                   return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, Exists | WriteInProgress) for r in results if isinstance(r, BaseException))


async def test_concurrent_parcel_writes_exactly_one_wins(tmp_path):
    store = FileStore(tmp_path)
    data = b"a red one"
    label = Label(sha256=hashlib.sha256(data).hexdigest(), name="x", size=len(data))
    gate = asyncio.Event()

    async def body():
        await gate.wait()
        yield data

    tasks = [asyncio.create_task(store.write_parcel(label, body())) for _ in range(4)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, Exists | WriteInProgress) for r in results if r is not None)
    assert store.parcel_file(label.sha256).read_bytes() == data
    assert sorted(p.name for p in store.parcel_file(label.sha256).parent.iterdir()) == ["label.toml", "parcel.dat"]


def test_recover_removes_only_unfinished_state(tmp_path):
    store = FileStore(tmp_path)
    done = tmp_path / "parcels" / ("a" * 64)
    done.mkdir()
    (done / "parcel.dat").write_bytes(b"x")
    (done / "parcel.dat.part").write_bytes(b"stale")
    half = tmp_path / "parcels" / ("b" * 64)
    half.mkdir()
    (half / "parcel.dat.part").write_bytes(b"half")
    report = store.recover()
    assert (report.removed_parts, report.removed_dirs) == (2, 1)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == \
           [f"parcels/{'a' * 64}/parcel.dat"]
