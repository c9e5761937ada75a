"""Hostile and broken input: every case gets the right 4xx, a message naming the problem, and leaves
the store exactly as it was (compared file by file before and after)."""

from __future__ import annotations

import asyncio
import hashlib
import tomllib

import pytest
from bindle_support import IDENTITY, PLUS3, RED, WARPCORE_V1, Bundle, parse_reply, seed

VALID = WARPCORE_V1.toml()


def _error(reply) -> str:
    assert reply.headers["content-type"] == "application/toml"
    return tomllib.loads(reply.text)["error"]


@pytest.mark.parametrize("text,needle", [
    ("this is = = not toml", "invalid TOML"),
    ('bindleVersion = "1.0.0"\n[bindle]\nname = "x"\n', "missing field `version`"),
    ('bindleVersion = "1.0.0"\n', "missing field `bindle`"),
    (VALID + '\nsurprise = "key"\n', "unknown field `surprise`"),
    (VALID.replace('bindleVersion = "1.0.0"', 'bindleVersion = "1.0.0"\nyanked_signature = []'),
     "unknown field `yanked_signature`"),
    (VALID.replace("label.size = 9", "label.size = 9\nlabel.colour = 'red'"), "unknown field `colour`"),
    (VALID.replace("label.size = 9", "label.size = 9\nextra = 1"), "unknown field `extra`"),
    (VALID.replace("label.size = 9", "label.size = 9\nconditions.memberOf = ['a']\nconditions.when = 'x'"),
     "unknown field `when`"),
    (VALID.replace('version = "1.0.0"\nauthors', 'version = "1.0"\nauthors'), "not a valid semantic version"),
    (VALID.replace('version = "1.0.0"\nauthors', 'version = "latest"\nauthors'), "not a valid semantic version"),
    (VALID.replace("label.size = 9", "label.size = -9"), "expected an unsigned integer"),
    (VALID.replace("label.size = 9", "label.size = '9'"), "expected an unsigned integer"),
    (VALID.replace("label.mediaType = 'text/plain'\n", ""), "missing field `mediaType`"),
    (VALID + '\n[[group]]\nname = "g"\nsatisfiedBy = "someOf"\n', "unknown variant `someOf`"),
    (VALID + '\n[[signature]]\nby = "me"\nsignature = "x"\nkey = "y"\nrole = "boss"\nat = 1\n', "unknown role"),
])
async def test_bad_invoices_are_400_and_write_nothing(server, text, needle):
    before = server.files()
    reply = await server.post_invoice(text)
    assert reply.status == 400, reply.text
    message = _error(reply)
    assert message.startswith("Request body toml deserialize error") and needle in message, message
    assert server.files() == before == set()


async def test_bad_json_invoice_is_400(server):
    reply = await server.call("POST", "/v1/_i", body=b'{"bindleVersion": "1.0.0", "bindle": ')
    assert reply.status == 400 and "invalid JSON" in _error(reply)
    assert server.files() == set()


@pytest.mark.parametrize("name,needle", [
    ("../../etc", "'..'"), ("/etc/passwd", "absolute"), ("a//b", "empty"), ("a/./b", "'.'"),
    ("%2e%2e/x", "percent-encoded"), ("a b", "may only use"), ("a\\\\b", "may only use"), ("x@y", "may only use"),
])
async def test_unsafe_names_are_refused_on_create(server, name, needle):
    text = VALID.replace('name = "enterprise.com/warpcore"', f'name = "{name}"')
    reply = await server.post_invoice(text)
    assert reply.status == 400, reply.text
    assert _error(reply).startswith("invalid ID given") and needle in _error(reply), _error(reply)
    assert server.files() == set()


@pytest.mark.parametrize("sha", ["../../../etc/passwd", "..", "abc/def", "%2e%2e", "zz" * 32, ""])
async def test_unsafe_label_shas_are_refused_on_create(server, sha):
    text = VALID.replace(RED.sha, sha)
    reply = await server.post_invoice(text)
    assert reply.status == 400 and "invalid parcel SHA" in _error(reply)
    assert server.files() == set()


_TRAVERSAL = [
    ("/v1/_i/../../etc/passwd/1.0.0", "'..'"),
    ("/v1/_i/%2e%2e/%2e%2e/etc/1.0.0", "percent-encoded"),
    ("/v1/_i/a%2F..%2Fb/1.0.0", "percent-encoded"),
    ("/v1/_i//etc/passwd/1.0.0", "absolute"),
    ("/v1/_i/enterprise.com/warpcore/1.0.0@../../invoices", "invalid parcel SHA"),
    ("/v1/_i/enterprise.com/warpcore/1.0.0@%2e%2e%2f%2e%2e", "invalid parcel SHA"),
    ("/v1/_i/enterprise.com/warpcore/1.0.0@/etc/passwd", "invalid parcel SHA"),
    ("/v1/_i/../../etc/passwd/1.0.0@" + RED.sha, "'..'"),
]
_CASES = [("GET", "/v1/_r/missing/../warpcore/1.0.0", "'..'")]
_CASES += [(m, p, n) for p, n in _TRAVERSAL for m in ("GET", "HEAD")]
_CASES += [("POST", p, n) for p, n in _TRAVERSAL if "@" in p]
_CASES += [("DELETE", p, n) for p, n in _TRAVERSAL if "@" not in p]


@pytest.mark.parametrize("method,path,needle", _CASES)
async def test_traversal_in_urls_is_400_and_writes_nothing(server, method, path, needle):
    await seed(server, [WARPCORE_V1], upload=False)
    before = server.files()
    reply = await server.call(method, path, body=b"a red one" if method == "POST" else None)
    assert reply.status == 400, (reply.status, reply.text)
    if method != "HEAD":
        assert needle in _error(reply), _error(reply)
    assert server.files() == before
    assert not any(p.name == "passwd" for p in server.root.parent.rglob("*"))


async def test_digest_mismatch_leaves_nothing(server):
    """v0.7.1's `invalid` scaffold: right size, wrong bytes."""
    holodeck = Bundle("enterprise.com/holodeck", "1.0.0", [RED])
    await seed(server, [holodeck], upload=False)
    before = server.files()
    wrong = b"a blu one"  # same length as "a red one"
    reply = await server.upload(holodeck, RED.sha, wrong)
    assert reply.status == 400
    assert _error(reply).startswith("digest does not match") and hashlib.sha256(wrong).hexdigest() in _error(reply)
    assert server.files() == before
    assert not (server.root / "parcels" / RED.sha).exists()
    # ...so the retry with the right bytes succeeds (v0.7.1 would answer 409 here)
    assert (await server.upload(holodeck, RED.sha)).status == 200


@pytest.mark.parametrize("data", [b"a red", b"a red one, and more"])
async def test_size_mismatch_leaves_nothing(server, data):
    await seed(server, [WARPCORE_V1], upload=False)
    before = server.files()
    reply = await server.upload(WARPCORE_V1, RED.sha, data)
    assert reply.status == 400 and _error(reply).startswith("parcel size does not match invoice")
    assert server.files() == before


@pytest.mark.parametrize("data", [b"a red", b"a red one, and more"])
async def test_chunked_size_mismatch_leaves_nothing(server, data):
    await seed(server, [WARPCORE_V1], upload=False)
    before = server.files()
    body = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"
    reply = await server.call("POST", f"/v1/_i/{WARPCORE_V1.id}@{RED.sha}", body=body,
                              headers={"Transfer-Encoding": "chunked"})
    assert reply.status == 400 and _error(reply).startswith("parcel size does not match invoice")
    assert server.files() == before


async def test_oversize_invoice_is_413(make_server):
    server = await make_server(max_invoice_size=200)
    text = IDENTITY.toml()
    assert len(text) > 200
    reply = await server.post_invoice(text)
    assert reply.status == 413 and "200 bytes" in _error(reply)
    chunked = f"{len(text):x}\r\n{text}\r\n0\r\n\r\n".encode()
    reply = await server.call("POST", "/v1/_i", body=chunked,
                              headers={"Content-Type": "application/toml", "Transfer-Encoding": "chunked"})
    assert reply.status == 413
    assert server.files() == set()


async def test_oversize_parcel_is_413(make_server):
    server = await make_server(max_parcel_size=16)
    await seed(server, [PLUS3], upload=False)
    model = PLUS3.files[0]
    assert len(model.data) > 16
    before = server.files()
    reply = await server.upload(PLUS3, model.sha)
    assert reply.status == 413 and "16 bytes" in _error(reply)
    body = f"{len(model.data):x}\r\n".encode() + model.data + b"\r\n0\r\n\r\n"
    reply = await server.call("POST", f"/v1/_i/{PLUS3.id}@{model.sha}", body=body,
                              headers={"Transfer-Encoding": "chunked"})
    assert reply.status == 413
    assert server.files() == before


async def test_write_in_progress_is_409(server):
    await seed(server, [WARPCORE_V1], upload=False)
    part_dir = server.root / "parcels" / RED.sha
    part_dir.mkdir(parents=True)
    (part_dir / "parcel.dat.part").write_bytes(b"a re")
    reply = await server.upload(WARPCORE_V1, RED.sha)
    assert reply.status == 409 and "write operation is currently in progress" in _error(reply)
    assert (part_dir / "parcel.dat.part").read_bytes() == b"a re"  # the other writer's file is untouched


async def test_stalled_upload_is_dropped_and_leaves_nothing(make_server):
    """The client sends half the body and then nothing: the server gives up (408) and cleans up."""
    server = await make_server(upload_idle_timeout=0.5)
    await seed(server, [PLUS3], upload=False)
    model = PLUS3.files[0]
    before = server.files()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        head = f"POST /v1/_i/{PLUS3.id}@{model.sha} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(model.data)}\r\n\r\n"
        writer.write(head.encode() + model.data[: len(model.data) // 2])
        await writer.drain()
        head_bytes = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        length = int(parse_reply(head_bytes).headers["content-length"])
        reply = parse_reply(head_bytes + await asyncio.wait_for(reader.readexactly(length), 60))
    finally:
        writer.close()
    assert reply.status == 408 and "upload stalled" in _error(reply)
    assert server.files() == before
    assert (await server.upload(PLUS3, model.sha)).status == 200
