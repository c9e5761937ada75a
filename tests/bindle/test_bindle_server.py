"""Conformance with bindle v0.7.1: every route and status code of the reference, checked against
independent references (hashlib for shas, tomllib/json for bodies, PyNaCl for signatures)."""

from __future__ import annotations

import base64
import hashlib
import json
import tomllib

import bcrypt
import pytest
from bindle_support import (
    CARGOBAY,
    GREEN,
    IDENTITY,
    MOBILENET,
    PLUS3,
    RED,
    WARPCORE_V1,
    WARPCORE_V2,
    Bundle,
    seed,
)
from nacl.signing import VerifyKey

NOT_FOUND = "resource not found: if an item does not appear in our records, it does not exist!"


def toml_body(reply) -> dict:
    assert reply.headers["content-type"] == "application/toml", reply.headers
    return tomllib.loads(reply.text)


# ------------------------------------------------------------------------------------------- healthz

@pytest.mark.parametrize("method,path", [("GET", "/healthz"), ("POST", "/healthz"), ("DELETE", "/healthz/x/y")])
async def test_healthz_any_method_and_subpath(server, method, path):
    reply = await server.call(method, path)
    assert (reply.status, reply.text) == (200, "OK")
    assert reply.headers["content-type"].startswith("text/plain")


async def test_unknown_routes_are_404_with_empty_body(server):
    for path in ("/healthzx", "/v2/_i", "/v1/_r/other/x/1.0.0", "/v1/nope", "/"):
        reply = await server.call("GET", path)
        assert (reply.status, reply.body) == (404, b""), path


@pytest.mark.parametrize("method,path", [("POST", "/v1/_q"), ("PUT", "/v1/_i/a/1.0.0"),
                                         ("PATCH", "/v1/_i"), ("POST", "/v1/_r/missing/a/1.0.0")])
async def test_wrong_method_is_405(server, method, path):
    reply = await server.call(method, path)
    assert reply.status == 405 and "method not allowed" in reply.text


# ------------------------------------------------------------------------------------------ invoices

@pytest.mark.parametrize("bundle", [IDENTITY, PLUS3, MOBILENET], ids=lambda b: b.id)
async def test_create_reports_missing_and_stores_signed_invoice(server, bundle):
    reply = await server.post_invoice(bundle)
    assert reply.status == 202
    body = toml_body(reply)
    assert set(body) == {"invoice", "missing"}
    assert sorted(m["sha256"] for m in body["missing"]) == sorted(hashlib.sha256(d).hexdigest()
                                                                  for d in bundle.parcels.values())
    sent = tomllib.loads(bundle.toml())
    returned = body["invoice"]
    assert returned["bindle"] == sent["bindle"] and returned["parcel"] == sent["parcel"]
    assert returned["group"] == sent["group"] and returned["annotations"] == sent["annotations"]
    # stored in bindle's layout, under the sha256 of "name/version", exactly as returned
    idsha = hashlib.sha256(bundle.id.encode()).hexdigest()
    stored = tomllib.loads((server.root / "invoices" / idsha / "invoice.toml").read_text())
    assert stored == returned


async def test_host_signature_verifies_against_independent_cleartext(server):
    body = toml_body(await server.post_invoice(IDENTITY))
    [sig] = body["invoice"]["signature"]
    assert sig["role"] == "host" and isinstance(sig["at"], int)
    inv = body["invoice"]
    cleartext = "\n".join([sig["by"], inv["bindle"]["name"], inv["bindle"]["version"], "host", "~",
                           *(p["label"]["sha256"] for p in inv["parcel"])])
    VerifyKey(base64.b64decode(sig["key"])).verify(cleartext.encode(), base64.b64decode(sig["signature"]))


async def test_warpcore_workflow(server):
    """v0.7.1's test_successful_workflow: 202, upload, dedup gives 201, v2 has exactly one missing."""
    assert (await server.post_invoice(WARPCORE_V1)).status == 202
    reply = await server.upload(WARPCORE_V1, RED.sha)
    assert (reply.status, toml_body(reply)) == (200, {"message": "parcel created"})
    assert (server.root / "parcels" / RED.sha / "parcel.dat").read_bytes() == b"a red one"
    another = Bundle("another.com/bindle", "1.0.0", [RED])
    reply = await server.post_invoice(another)
    assert reply.status == 201 and "missing" not in toml_body(reply)
    reply = await server.post_invoice(WARPCORE_V2)
    assert reply.status == 202 and [m["sha256"] for m in toml_body(reply)["missing"]] == [GREEN.sha]
    reply = await server.call("GET", "/v1/_i/enterprise.com/warpcore/1.0.0")
    assert reply.status == 200 and toml_body(reply)["bindle"]["name"] == "enterprise.com/warpcore"
    reply = await server.call("GET", f"/v1/_i/enterprise.com/warpcore/1.0.0@{RED.sha}")
    assert (reply.status, reply.body, reply.headers["content-type"]) == (200, b"a red one", "text/plain")


async def test_create_json_response_has_null_missing(server):
    await seed(server, [WARPCORE_V1])
    reply = await server.post_invoice(Bundle("json.example/x", "1.0.0", [RED]), accept="application/json")
    assert reply.status == 201 and reply.headers["content-type"] == "application/json"
    body = json.loads(reply.body)
    assert body["missing"] is None and body["invoice"]["bindle"]["name"] == "json.example/x"


async def test_create_accepts_json_without_content_type_and_toml_with_charset(server):
    doc = tomllib.loads(PLUS3.toml())
    reply = await server.call("POST", "/v1/_i", body=json.dumps(doc).encode())
    assert reply.status == 202, reply.text
    reply = await server.call("POST", "/v1/_i", body=IDENTITY.toml().encode(),
                              headers={"Content-Type": "application/toml; charset=utf-8"})
    assert reply.status == 202, reply.text


async def test_create_rejects_other_content_types(server):
    reply = await server.call("POST", "/v1/_i", body=IDENTITY.toml().encode(), headers={"Content-Type": "text/plain"})
    assert reply.status == 400 and "content-type is not TOML" in toml_body(reply)["error"]
    assert server.files() == set()


async def test_create_existing_is_409_and_yanked_is_422(server):
    assert (await server.post_invoice(IDENTITY)).status == 202
    reply = await server.post_invoice(IDENTITY)
    assert (reply.status, toml_body(reply)["error"]) == (409, "resource already exists")
    yanked = Bundle("yanked.example/x", "1.0.0", [RED], extra="\n")
    text = "yanked = true\n" + yanked.toml()
    reply = await server.post_invoice(text)
    assert (reply.status, toml_body(reply)["error"]) == (422, "bindle cannot be created as yanked")
    idsha = hashlib.sha256(b"yanked.example/x/1.0.0").hexdigest()
    assert not (server.root / "invoices" / idsha).exists()


@pytest.mark.parametrize("accept,expected", [
    (None, "application/toml"), ("*/*", "application/toml"), ("text/plain", "application/toml"),
    ("application/json", "application/json"), ("text/json", "application/json"),
    ("application/json;x=y", "application/json"), ("foo, application/json", "application/json"),
    ("application/toml, application/json", "application/toml"),
    ("text/html,application/json;q=0.1", "application/json"),
])
async def test_get_invoice_format_follows_accept(server, accept, expected):
    await seed(server, [IDENTITY], upload=False)
    reply = await server.call("GET", f"/v1/_i/{IDENTITY.id}", headers={"Accept": accept} if accept else None)
    assert reply.status == 200 and reply.headers["content-type"] == expected
    doc = json.loads(reply.body) if expected == "application/json" else tomllib.loads(reply.text)
    assert doc["bindle"] == {"name": "identity_model", "version": "0.2.0",
                             "authors": ["Waft tests <tests@example.com>"], "description": "test bindle"}


async def test_errors_are_toml_even_when_json_is_asked_for(server):
    reply = await server.call("GET", "/v1/_i/nothing/1.0.0", headers={"Accept": "application/json"})
    assert (reply.status, toml_body(reply)) == (404, {"error": NOT_FOUND})


async def test_head_invoice_has_get_headers_and_no_body(server):
    await seed(server, [IDENTITY], upload=False)
    get = await server.call("GET", f"/v1/_i/{IDENTITY.id}")
    head = await server.call("HEAD", f"/v1/_i/{IDENTITY.id}")
    assert head.status == 200 and head.body == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == str(len(get.body))
    assert (await server.call("HEAD", "/v1/_i/nothing/1.0.0")).status == 404


@pytest.mark.parametrize("path", ["/v1/_i", "/v1/_i/foo", "/v1/_i/foo/1.0", "/v1/_i/foo/", "/v1/_i//1.0.0"])
async def test_bad_ids_are_400(server, path):
    reply = await server.call("GET", path)
    assert reply.status == 400 and toml_body(reply)["error"].startswith("invalid ID given")


async def test_three_at_pieces_is_invalid_path(server):
    reply = await server.call("GET", "/v1/_i/a/1.0.0@abc@def")
    assert (reply.status, toml_body(reply)["error"]) == (400, "Invalid URL. Missing Bindle ID and/or parcel SHA")


# --------------------------------------------------------------------------------------------- yank

async def test_yank_lifecycle(server):
    await seed(server, [WARPCORE_V1])
    path = f"/v1/_i/{WARPCORE_V1.id}"
    reply = await server.call("DELETE", path)
    assert (reply.status, toml_body(reply)) == (200, {"message": "invoice yanked"})
    reply = await server.call("GET", path)
    assert (reply.status, toml_body(reply)) == (403, {"error": "bindle is yanked"})
    reply = await server.call("GET", path + "?yanked=true")
    assert reply.status == 200 and toml_body(reply)["yanked"] is True
    stored = tomllib.loads((server.root / "invoices" / hashlib.sha256(WARPCORE_V1.id.encode()).hexdigest()
                            / "invoice.toml").read_text())
    assert stored["yanked"] is True
    assert (await server.call("DELETE", path)).status == 200  # yanking again is fine
    for method, sub in (("GET", f"@{RED.sha}"), ("HEAD", f"@{RED.sha}")):
        assert (await server.call(method, path + sub)).status == 403
    reply = await server.call("GET", f"/v1/_r/missing/{WARPCORE_V1.id}")
    assert reply.status == 403


async def test_yank_errors(server):
    assert (await server.call("DELETE", "/v1/_i/nothing/1.0.0")).status == 404
    assert (await server.call("DELETE", "/v1/_i/nothing")).status == 400
    await seed(server, [WARPCORE_V1])
    reply = await server.call("DELETE", f"/v1/_i/{WARPCORE_V1.id}@{RED.sha}")
    assert reply.status == 400 and toml_body(reply)["error"].startswith("invalid ID given")


async def test_yank_survives_restart(make_server, tmp_path):
    first = await make_server(directory=tmp_path / "s")
    await seed(first, [WARPCORE_V1])
    assert (await first.call("DELETE", f"/v1/_i/{WARPCORE_V1.id}")).status == 200
    await first.stop()
    second = await make_server(directory=tmp_path / "s")
    assert (await second.call("GET", f"/v1/_i/{WARPCORE_V1.id}")).status == 403
    assert (await second.call("GET", f"/v1/_i/{WARPCORE_V1.id}@{RED.sha}")).status == 403


# ------------------------------------------------------------------------------------------ parcels

async def test_parcel_get_and_head(server):
    await seed(server, [MOBILENET])
    model = MOBILENET.files[0]
    reply = await server.call("GET", f"/v1/_i/{MOBILENET.id}@{model.sha}")
    assert reply.status == 200 and hashlib.sha256(reply.body).hexdigest() == model.sha
    assert reply.headers["content-type"] == "application/octet-stream"
    assert reply.headers["content-length"] == str(len(model.data))
    head = await server.call("HEAD", f"/v1/_i/{MOBILENET.id}@{model.sha}")
    assert (head.status, head.body) == (200, b"")
    assert head.headers["content-length"] == str(len(model.data))
    meta = MOBILENET.files[1]
    reply = await server.call("GET", f"/v1/_i/{MOBILENET.id}@{meta.sha}")
    assert reply.headers["content-type"] == "application/json"
    assert json.loads(reply.body)["model_name"] == "mobilenetv2-7"


async def test_parcel_membership_and_presence(server):
    await seed(server, [WARPCORE_V2], upload=False)
    assert (await server.upload(WARPCORE_V2, RED.sha)).status == 200
    reply = await server.call("GET", f"/v1/_i/{WARPCORE_V2.id}@{GREEN.sha}")  # listed, never uploaded
    assert (reply.status, toml_body(reply)["error"]) == (404, NOT_FOUND)
    assert (await server.call("HEAD", f"/v1/_i/{WARPCORE_V2.id}@{GREEN.sha}")).status == 404
    stranger = hashlib.sha256(b"not in the invoice").hexdigest()
    for method in ("GET", "POST"):
        body = b"x" if method == "POST" else None
        reply = await server.call(method, f"/v1/_i/{WARPCORE_V2.id}@{stranger}", body=body)
        assert reply.status == 400
        assert toml_body(reply)["error"] == f"Parcel SHA {stranger} does not exist in invoice {WARPCORE_V2.id}"
    reply = await server.call("GET", f"/v1/_i/ghost/1.0.0@{RED.sha}")
    assert reply.status == 404
    reply = await server.call("POST", f"/v1/_i/ghost/1.0.0@{RED.sha}", body=b"a red one")
    assert reply.status == 404


async def test_reupload_is_409_even_through_another_bindle(server):
    await seed(server, [WARPCORE_V1])
    reply = await server.upload(WARPCORE_V1, RED.sha)
    assert (reply.status, toml_body(reply)["error"]) == (409, "resource already exists")
    await seed(server, [WARPCORE_V2], upload=False)
    assert (await server.upload(WARPCORE_V2, RED.sha)).status == 409


async def test_chunked_parcel_upload(server):
    await seed(server, [PLUS3], upload=False)
    model = PLUS3.files[0]
    half = len(model.data) // 2
    chunks = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (model.data[:half], model.data[half:]))
    reply = await server.call("POST", f"/v1/_i/{PLUS3.id}@{model.sha}", body=chunks + b"0\r\n\r\n",
                              headers={"Transfer-Encoding": "chunked"})
    assert reply.status == 200, reply.text
    assert (server.root / "parcels" / model.sha / "parcel.dat").read_bytes() == model.data
    label = tomllib.loads((server.root / "parcels" / model.sha / "label.toml").read_text())
    assert label == {"sha256": model.sha, "mediaType": model.media_type, "name": model.name, "size": len(model.data)}


# ------------------------------------------------------------------------------------------ missing

async def test_missing_lists_unuploaded_labels(server):
    await seed(server, [CARGOBAY], upload=False)
    assert (await server.upload(CARGOBAY, RED.sha)).status == 200
    reply = await server.call("GET", f"/v1/_r/missing/{CARGOBAY.id}")
    assert reply.status == 200
    names = sorted(m["name"] for m in toml_body(reply)["missing"])
    assert names == ["barrel.txt", "crate.txt"]
    reply = await server.call("GET", f"/v1/_r/missing/{CARGOBAY.id}", headers={"Accept": "application/json"})
    assert len(json.loads(reply.body)["missing"]) == 2


async def test_missing_empty_is_an_empty_array(server):
    await seed(server, [WARPCORE_V1])
    reply = await server.call("GET", f"/v1/_r/missing/{WARPCORE_V1.id}")
    assert reply.status == 200 and "missing = []" in reply.text and toml_body(reply) == {"missing": []}
    assert (await server.call("GET", "/v1/_r/missing/ghost/1.0.0")).status == 404
    assert (await server.call("GET", "/v1/_r/missing/ghost")).status == 400


# ------------------------------------------------------------------------------------------- search

async def _search(server, query: str, accept: str | None = None) -> dict:
    reply = await server.call("GET", "/v1/_q" + query, headers={"Accept": accept} if accept else None)
    assert reply.status == 200, reply.text
    return json.loads(reply.body) if accept else toml_body(reply)


async def test_search_substring_and_fields(server):
    await seed(server, [WARPCORE_V1, WARPCORE_V2, CARGOBAY, IDENTITY], upload=False)
    found = await _search(server, "?q=enterprise.com/warpcore")
    assert set(found) == {"query", "strict", "offset", "limit", "total", "more", "yanked", "invoices"}
    assert (found["query"], found["total"], found["more"], found["offset"], found["limit"]) == \
           ("enterprise.com/warpcore", 2, False, 0, 50)
    assert {i["bindle"]["name"] for i in found["invoices"]} == {"enterprise.com/warpcore"}
    empty = await _search(server, "?q=non/existent")
    assert empty["total"] == 0 and empty["invoices"] == []
    raw = await server.call("GET", "/v1/_q?q=non/existent")
    assert "invoices = []" in raw.text
    everything = await _search(server, "")
    assert everything["total"] == 4 and everything["query"] == ""


async def test_search_order_and_paging(server):
    versions = ["1.10.0", "1.2.0", "1.3.0", "2.0.0", "0.9.0"]
    await seed(server, [Bundle("my/bindle", v, [RED]) for v in versions], upload=False)
    found = await _search(server, "?query=my/bindle", accept="application/json")
    # lexicographic on "name/version", as v0.7.1's BTreeMap: 1.10.0 sorts before 1.2.0
    assert [i["bindle"]["version"] for i in found["invoices"]] == sorted(versions)
    page = await _search(server, "?q=my&o=1&l=2")
    assert [i["bindle"]["version"] for i in page["invoices"]] == sorted(versions)[1:3]
    assert (page["total"], page["more"], page["offset"], page["limit"]) == (5, True, 1, 2)
    last = await _search(server, "?q=my&offset=3&limit=2")
    assert len(last["invoices"]) == 2 and last["more"] is False
    beyond = await _search(server, "?q=my&offset=9")
    assert beyond["invoices"] == [] and beyond["more"] is False and beyond["total"] == 5


@pytest.mark.parametrize("req,expected", [
    ("1.2.3", ["1.2.3"]), ("^1.2.3", ["1.2.3", "1.3.0"]), ("1.2.99", []), ("= 1.2.3", ["1.2.3"]),
    ("~1.2", ["1.2.3"]), (">=1.3, <2", ["1.3.0"]), ("1.x", ["1.2.3", "1.3.0"]), ("*", ["1.2.3", "1.3.0", "2.0.0"]),
    ("1.2.3 - 1.5.6", []), ("%5E%26%25", []), ("^1.3.0-alpha", ["1.3.0"]),
])
async def test_search_version_ranges(server, req, expected):
    await seed(server, [Bundle("my/bindle", v, [RED]) for v in ("1.2.3", "1.3.0", "2.0.0")], upload=False)
    from urllib.parse import quote
    found = await _search(server, f"?q=my/bindle&v={quote(req, safe='%')}")
    assert [i["bindle"]["version"] for i in found["invoices"]] == expected


async def test_search_hides_yanked_unless_asked(server):
    await seed(server, [WARPCORE_V1, WARPCORE_V2], upload=False)
    await server.call("DELETE", f"/v1/_i/{WARPCORE_V1.id}")
    found = await _search(server, "?q=warpcore")
    assert [i["bindle"]["version"] for i in found["invoices"]] == ["2.0.0"]
    found = await _search(server, "?q=warpcore&yanked=true")
    assert [i.get("yanked", False) for i in found["invoices"]] == [True, False]


@pytest.mark.parametrize("query", ["?bogus=1", "?limit=256", "?offset=-1", "?strict=maybe", "?q=a&query=b"])
async def test_search_bad_query_string_is_400(server, query):
    reply = await server.call("GET", "/v1/_q" + query)
    assert reply.status == 400 and reply.text.startswith("Invalid query string")


# ------------------------------------------------------------------------------------------- login

async def test_login_without_oidc(server):
    assert (await server.call("GET", "/v1/login")).status == 400
    reply = await server.call("GET", "/v1/login?provider=github")
    assert reply.status == 400 and toml_body(reply)["error"].startswith("Error with auth request")


# -------------------------------------------------------------------------------------------- auth

def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
async def auth_server(make_server, tmp_path):
    hashed = bcrypt.hashpw(b"sw0rdf1sh", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$", 1)
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"admin:{hashed}\n")
    return await make_server(htpasswd_file=htpasswd)


async def test_anonymous_get_only(auth_server):
    reply = await auth_server.post_invoice(WARPCORE_V1)
    assert (reply.status, toml_body(reply)["error"]) == (403, "access denied")
    assert auth_server.files() == set()
    reply = await auth_server.call("POST", "/v1/_i", body=WARPCORE_V1.toml().encode(),
                                   headers={"Content-Type": "application/toml", **_basic("admin", "sw0rdf1sh")})
    assert reply.status == 202
    assert (await auth_server.call("GET", f"/v1/_i/{WARPCORE_V1.id}")).status == 200
    with_creds = await auth_server.call("GET", f"/v1/_i/{WARPCORE_V1.id}", headers=_basic("admin", "sw0rdf1sh"))
    assert with_creds.status == 200
    assert (await auth_server.call("HEAD", f"/v1/_i/{WARPCORE_V1.id}")).status == 403
    assert (await auth_server.call("DELETE", f"/v1/_i/{WARPCORE_V1.id}")).status == 403


@pytest.mark.parametrize("header", [_basic("admin", "wrong"), _basic("nobody", "sw0rdf1sh"),
                                    {"Authorization": "Bearer abc"}, {"Authorization": "Basic !!!"}])
async def test_bad_credentials_are_401_even_on_get(auth_server, header):
    reply = await auth_server.call("GET", "/v1/_q", headers=header)
    assert (reply.status, toml_body(reply)["error"]) == (401, "unauthorized")
