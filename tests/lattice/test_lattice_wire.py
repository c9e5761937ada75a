"""Wire formats against the protocol documents: nkeys, wascap JWTs, module hashes, msgpack structs."""

from __future__ import annotations

import base64
import hashlib
import json

import msgpack
import pytest

from waft.claims import ClaimsError, KeyPair, Role, jwt, sign_actor, verify_actor, wasm
from waft.claims.keys import KeyError_, decode_public_key
from waft.lattice.codec import DecodeError
from waft.lattice.host_data import HostData, HostDataError
from waft.lattice.signing import ForgedInvocation, sign_invocation, verify_invocation
from waft.lattice.types import Invocation, InvocationResponse, LinkDefinition, WasmCloudEntity

# An empty module plus one custom section named "other": enough structure for the section walker.
EMPTY_MODULE = b"\x00asm\x01\x00\x00\x00" + b"\x00\x08\x05other\x01\x02"


def test_nkeys_go_compat_vector() -> None:
    # wasmcloud-protocol §6.3: the nkeys Go-compat test vector.
    pair = KeyPair.from_seed("SAAPN4W3EG6KCJGUQTKTJ5GSB5NHK5CHAJL4DBGFUM3HHROI4XUEP4OBK4")
    assert pair.public_key == "ACODERUVFFAWZQDSS6SBIACUA5O6SXF7HJ3YTYXBALHZP3P7R4BUO4J2"
    assert pair.role is Role.ACCOUNT


@pytest.mark.parametrize("role", list(Role))
def test_every_role_round_trips(role: Role) -> None:
    pair = KeyPair.generate(role)
    assert pair.public_key[0] == role.letter and pair.seed[:2] == f"S{role.letter}"
    assert KeyPair.from_seed(pair.seed).public_key == pair.public_key
    assert decode_public_key(pair.public_key)[0] is role


@pytest.mark.parametrize("bad", ["", "SX", "S" + "A" * 57, "not a seed at all", "SAAPN4W3EG7KCJGUQTKTJ5GSB5NHK5CHAJL4"
                                 "DBGFUM3HHROI4XUEP4OBK4"])
def test_malformed_seeds_are_refused(bad: str) -> None:
    with pytest.raises(KeyError_):
        KeyPair.from_seed(bad)


def test_jwt_layout_matches_wascap() -> None:
    account = KeyPair.generate(Role.ACCOUNT)
    token = jwt.encode({"iss": account.public_key, "sub": "x"}, account)
    header_b64, _body, sig_b64 = token.split(".")
    assert "=" not in token
    assert json.loads(base64.urlsafe_b64decode(header_b64 + "==")) == {"typ": "jwt", "alg": "Ed25519"}
    assert jwt.decode(token)["sub"] == "x"
    tampered = f"{header_b64}.{jwt.b64url(json.dumps({'iss': account.public_key, 'sub': 'y'}).encode())}.{sig_b64}"
    with pytest.raises(ClaimsError, match="Invalid signature"):
        jwt.decode(tampered)


def test_jwt_header_written_another_way_still_decodes() -> None:
    """`decode` skips parsing the header it writes itself; any other spelling is parsed as before."""
    account = KeyPair.generate(Role.ACCOUNT)
    header = jwt.b64url(b'{ "alg": "Ed25519", "typ": "JWT" }')
    body = jwt.b64url(json.dumps({"iss": account.public_key, "sub": "x"}).encode())
    token = f"{header}.{body}.{jwt.b64url(account.sign(f'{header}.{body}'.encode()))}"
    assert header != jwt.HEADER_SEGMENT and jwt.decode(token)["sub"] == "x"
    bad = jwt.b64url(b'{"alg":"none"}')
    forged = f"{bad}.{body}.{jwt.b64url(account.sign(f'{bad}.{body}'.encode()))}"
    with pytest.raises(ClaimsError, match="alg Ed25519"):
        jwt.decode(forged)


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "!!!.###.$$$", "e30.e30.e30", "eyJhbGciOiJub25lIn0.e30.e30"])
def test_malformed_jwts_are_refused(token: str) -> None:
    with pytest.raises(ClaimsError):
        jwt.decode(token)


def test_claims_section_and_hash_as_wascap_computes_them() -> None:
    account, module = KeyPair.generate(Role.ACCOUNT), KeyPair.generate(Role.MODULE)
    signed = sign_actor(EMPTY_MODULE, issuer=account, subject=module, name="t", caps=["wasmcloud:httpserver"])
    # The section is appended last and the hash is of the module without it.
    assert signed.startswith(EMPTY_MODULE)
    assert wasm.sections(signed)[-1][3] == "jwt"
    expected = hashlib.sha256(EMPTY_MODULE).hexdigest().upper()
    claims = verify_actor(signed)
    assert claims.module_hash == expected and claims.subject == module.public_key
    assert claims.caps == ("wasmcloud:httpserver",)
    # wascap 0.9's section name is read too.
    newer = wasm.embed_token(EMPTY_MODULE, wasm.read_token(signed) or "", section="wasmcloud_jwt")
    assert verify_actor(newer).subject == module.public_key


def test_claims_refusals_name_the_problem() -> None:
    account, module = KeyPair.generate(Role.ACCOUNT), KeyPair.generate(Role.MODULE)
    with pytest.raises(ClaimsError, match="unsigned"):
        verify_actor(EMPTY_MODULE)
    signed = sign_actor(EMPTY_MODULE, issuer=account, subject=module, name="t")
    changed = bytearray(signed)
    changed[-len(signed) + len(EMPTY_MODULE) - 1] ^= 0xFF  # one byte of the module body
    with pytest.raises(ClaimsError, match="hash mismatch"):
        verify_actor(bytes(changed))
    expired = sign_actor(EMPTY_MODULE, issuer=account, subject=module, name="t", expires_in_days=-1)
    with pytest.raises(ClaimsError, match="expired"):
        verify_actor(expired)
    with pytest.raises(ClaimsError, match="allow-list"):
        verify_actor(signed, allowed_issuers=[KeyPair.generate(Role.ACCOUNT).public_key])
    with pytest.raises(ClaimsError, match="bad magic"):
        verify_actor(b"\x7fELF" + signed)
    with pytest.raises(ClaimsError, match="truncated"):
        wasm.sections(signed[:-3])


def test_entity_urls_and_invocation_hash_follow_the_reference() -> None:
    provider = WasmCloudEntity.provider("VXXX", "wasmcloud:messaging", "default")
    assert provider.url() == "wasmbus://wasmcloud/messaging/default/VXXX"
    assert WasmCloudEntity.actor("MABC").url() == "wasmbus://MABC"
    inv = Invocation(origin=WasmCloudEntity.actor("MABC"), target=provider, operation="OP_TESTING", msg=b"hi")
    assert inv.target_url == "wasmbus://wasmcloud/messaging/default/VXXX/OP_TESTING"


def test_invocation_msgpack_shape_and_tolerance() -> None:
    inv = Invocation(origin=WasmCloudEntity.actor("MA"), target=WasmCloudEntity.actor("MB"), operation="X.Y",
                     msg=b"\xff\x00", host_id="N1")
    wire = msgpack.unpackb(inv.encode(), raw=False)
    assert set(wire) == {"origin", "target", "operation", "msg", "id", "encoded_claims", "host_id"}
    assert isinstance(wire["msg"], bytes)
    # the 0.x Elixir host wrote bytes as msgpack str, even when not UTF-8
    wire["msg"] = "\u00e9t\u00e9"
    assert Invocation.decode(msgpack.packb(wire, use_bin_type=True)).msg == "\u00e9t\u00e9".encode()
    raw_str = msgpack.packb({**wire, "msg": b""}, use_bin_type=False)  # str type carrying bytes
    assert Invocation.decode(raw_str).msg == b""


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x93\x01\x02", msgpack.packb({"origin": 1}),
                                  msgpack.packb({"origin": {}, "target": {}, "operation": "x", "id": "i",
                                                 "content_length": -4}),
                                  b"\xdf\xff\xff\xff\xff"])
def test_malformed_invocations_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        Invocation.decode(data)


def test_response_and_linkdef_round_trip() -> None:
    response = InvocationResponse("id1", b"ok", error=None, content_length=5)
    assert InvocationResponse.decode(response.encode()) == response
    failed = InvocationResponse("id2", error="actor did not answer in time", error_kind="timeout")
    assert InvocationResponse.decode(failed.encode()) == failed
    assert "error_kind" not in msgpack.unpackb(response.encode())  # absent unless set: 0.x's shape
    link = LinkDefinition("MA", "VB", "wasmcloud:httpserver", "default", {"address": "0.0.0.0:8078"})
    assert LinkDefinition.decode(link.encode()) == link
    with pytest.raises(DecodeError, match="missing"):
        LinkDefinition.decode(msgpack.packb({"actor_id": "MA"}))


def test_invocation_signature_checks() -> None:
    cluster = KeyPair.generate(Role.CLUSTER)
    inv = Invocation(origin=WasmCloudEntity.actor("MA"), target=WasmCloudEntity.actor("MB"), operation="X.Y",
                     msg=b"payload")
    sign_invocation(inv, cluster)
    verify_invocation(inv, {cluster.public_key})
    with pytest.raises(ForgedInvocation, match="not a cluster issuer"):
        verify_invocation(inv, {KeyPair.generate(Role.CLUSTER).public_key})
    inv.msg = b"payloaD"
    with pytest.raises(ForgedInvocation, match="hash"):
        verify_invocation(inv, {cluster.public_key})
    inv.encoded_claims = inv.encoded_claims[:-4] + "AAAA"
    with pytest.raises(ForgedInvocation):
        verify_invocation(inv, {cluster.public_key})


def test_host_data_line() -> None:
    data = HostData(host_id="N1", lattice_rpc_prefix="default", link_name="default", lattice_rpc_url="127.0.0.1:4222",
                    provider_key="V1", invocation_seed="SC", cluster_issuers=["C1"],
                    link_definitions=[LinkDefinition("MA", "V1", "waft:test")])
    line = data.encode_line()
    decoded = HostData.decode_line(line)
    assert decoded.nats_url == "nats://127.0.0.1:4222" and decoded.link_definitions[0].actor_id == "MA"
    assert json.loads(base64.b64decode(line))["link_definitions"][0].keys() >= {"actor_id", "values"}
    for bad in (b"", b"%%%", base64.b64encode(b"[1]"), base64.b64encode(b'{"host_id": "N"}')):
        with pytest.raises(HostDataError):
            HostData.decode_line(bad)
