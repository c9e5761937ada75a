"""Issue 7: push and pull against a real docker-registry, the cache, provider archives, and every refusal."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import pytest
from waft_testing import ROOT, built_actor, run_waft, trusted_account

from waft.claims import KeyPair, Role, sign_actor
from waft.claims.jwt import b64url, b64url_decode
from waft.oci import OciError, cache, fetch_actor, fetch_artifact_sync, pull, push
from waft.oci import par as parlib

pytestmark = pytest.mark.timeout(180)
LAYER_TYPES = {"echo": "application/vnd.module.wasm.content.layer.v1+wasm",
               "httpserver": "application/vnd.wasmcloud.provider.archive.layer.v1+par"}


def fresh_actor() -> bytes:
    """An echo actor signed with new keys: bytes (and so a blob digest) no other test shares."""
    module = built_actor("echo", signed=False).read_bytes()
    return sign_actor(module, issuer=trusted_account(), subject=KeyPair.generate(Role.MODULE),
                      name="echo-variant", caps=["wasmcloud:httpserver"])


def test_cli_push_pull_round_trip_byte_identical(registry, artifacts, pushed, oci_home, tmp_path):
    for name, original in (("echo", artifacts.echo), ("httpserver", artifacts.httpserver_par)):
        out = tmp_path / f"{name}.pulled"
        done = run_waft("reg", "pull", pushed[name], "--insecure", "--destination", str(out), "-o", "json",
                        home=oci_home)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert out.read_bytes() == original.read_bytes()
        assert result["kind"] == ("actor" if name == "echo" else "provider")
        assert result["cached"] is False
        assert result["media_type"] == LAYER_TYPES[name]
        again = json.loads(run_waft("reg", "pull", pushed[name], "--insecure", "--destination", str(out),
                                    "-o", "json", home=oci_home).stdout)
        assert again["cached"] is True and again["layer_digest"] == result["layer_digest"]
        assert cache.blob_path(result["layer_digest"]).relative_to(oci_home / "cache" / "oci")
    # the manifest is the one wash writes: OCI image manifest, wasmCloud config and layer types, `{}` config
    import requests

    manifest = requests.get(f"http://{registry.address}/v2/waft/httpserver/manifests/0.1.0", timeout=10,
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.wasmcloud.provider.archive.config"
    assert manifest["config"]["size"] == 2
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.wasmcloud.provider.archive.layer.v1+par"]

    ping = run_waft("reg", "ping", registry.address, "--insecure", home=oci_home)
    assert ping.returncode == 0 and "is up" in ping.stdout, ping.stderr
    inspected = run_waft("par", "inspect", pushed["httpserver"], "--insecure", "-o", "json", home=oci_home)
    assert inspected.returncode == 0, inspected.stderr
    info = json.loads(inspected.stdout)
    assert info["capability_contract_id"] == "wasmcloud:httpserver" and info["name"] == "HTTP Server"
    assert info["targets"] == ["py3-none-any"] and info["revision"] == 1 and info["version"] == "0.1.0"
    assert info["account"].startswith("A") and info["service"].startswith("V") and info["verified"] is True


def test_cli_refusals_are_one_line(registry, pushed, oci_home, tmp_path):
    cases = [
        (("reg", "pull", registry.ref("echo", "latest"), "--insecure"), "latest is refused"),
        (("reg", "pull", registry.ref("echo", None), "--insecure"), "has no tag"),
        (("reg", "pull", registry.ref("echo", "9.9.9"), "--insecure"), "not found in the registry"),
        (("reg", "pull", registry.ref("echo")), "allowed explicitly: --insecure"),
        (("reg", "push", registry.ref("nothing", None), str(ROOT / "pyproject.toml"), "--insecure"), "has no tag"),
        (("reg", "push", registry.ref("nothing"), str(ROOT / "pyproject.toml"), "--insecure"),
         "neither a signed actor module"),
        (("reg", "push", registry.ref("unsigned"), str(built_actor("echo", signed=False)), "--insecure"),
         "No claims found"),
        (("reg", "ping", "127.0.0.1:1", "--insecure"), "unreachable"),
    ]
    for args, expected in cases:
        done = run_waft(*args, home=oci_home)
        assert done.returncode == 1, (args, done.stdout)
        assert expected in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr


async def test_latest_refused_unless_allowed(registry, oci_home):
    module = fresh_actor()
    push(registry.ref("latest-echo", "latest"), module, insecure=True, allow_latest=True)
    for ref in (registry.ref("latest-echo", "latest"), registry.ref("latest-echo", None)):
        with pytest.raises(OciError, match="latest is refused"):
            await fetch_actor(ref, allowed_insecure=[registry.address])
        assert await fetch_actor(ref, allow_latest=True, allowed_insecure=[registry.address]) == module
    with pytest.raises(OciError, match="latest is refused"):
        push(registry.ref("latest-echo", None), module, insecure=True)


async def test_insecure_registry_must_be_allowed(registry, pushed, oci_home):
    with pytest.raises(OciError, match="allowed-insecure list") as refused:
        await fetch_actor(pushed["echo"], allowed_insecure=[])
    assert registry.address in str(refused.value)
    with pytest.raises(OciError, match="allowed-insecure list"):
        await fetch_actor(pushed["echo"], allowed_insecure=["127.0.0.2:5000", "example.com"])
    assert await fetch_actor(pushed["echo"], allowed_insecure=[f"http://{registry.address}"]) == \
        built_actor("echo").read_bytes()
    assert await fetch_actor(pushed["echo"], allowed_insecure=["127.0.0.1"]) == built_actor("echo").read_bytes()


async def test_tampered_cache_is_refused_then_pulled_again(registry, oci_home):
    module = fresh_actor()
    ref = registry.ref("cache-echo")
    pushed = push(ref, module, insecure=True)
    first = fetch_artifact_sync(ref, allowed_insecure=[registry.address])
    assert first.data == module and not first.cached
    blob = cache.blob_path(pushed["layer_digest"])
    assert blob.read_bytes() == module
    assert fetch_artifact_sync(ref, allowed_insecure=[registry.address]).cached  # pulled once
    blob.write_bytes(module[:-1] + bytes([module[-1] ^ 1]))
    with pytest.raises(OciError, match="is corrupt") as refused:
        await fetch_actor(ref, allowed_insecure=[registry.address])
    assert pushed["layer_digest"] in str(refused.value)
    assert not blob.exists()  # removed, so the next pull fetches it again
    again = fetch_artifact_sync(ref, allowed_insecure=[registry.address])
    assert again.data == module and not again.cached


async def test_registry_serving_wrong_bytes_is_refused(registry, oci_home):
    module = fresh_actor()
    ref = registry.ref("tampered-echo")
    pushed = push(ref, module, insecure=True)
    stored = registry.blob_file(pushed["layer_digest"])
    assert stored.read_bytes() == module
    stored.write_bytes(module[:100] + b"\xff" + module[101:])
    with pytest.raises(OciError, match="digest mismatch"):
        await fetch_actor(ref, allowed_insecure=[registry.address])
    assert not cache.blob_path(pushed["layer_digest"]).exists()  # nothing unverified is cached


async def test_missing_tag_and_repository(registry, pushed, oci_home):
    for ref in (registry.ref("echo", "0.0.404"), registry.ref("no-such-repo")):
        with pytest.raises(OciError, match="not found in the registry"):
            await fetch_actor(ref, allowed_insecure=[registry.address])


async def test_kind_mismatch_and_digest_refs(registry, pushed, oci_home):
    with pytest.raises(OciError, match="is a provider archive, not an actor module"):
        await fetch_actor(pushed["httpserver"], allowed_insecure=[registry.address])
    artifact = pull(pushed["echo"], insecure=True)
    by_digest = f"{registry.address}/waft/echo@{artifact.manifest_digest}"
    assert await fetch_actor(by_digest, allowed_insecure=[registry.address]) == artifact.data  # pinned: no tag needed
    wrong = f"{registry.address}/waft/echo@sha256:{'0' * 64}"
    with pytest.raises(OciError, match="not found in the registry"):
        await fetch_actor(wrong, allowed_insecure=[registry.address])


# --------------------------------------------------------------------------------- provider archives
def make_par(tmp_path, **overrides) -> bytes:
    return parlib.create_par("waft_testprovider", capid="waft:test", vendor="waft", name="Test provider",
                             issuer=trusted_account(), subject=KeyPair.generate(Role.SERVICE),
                             source=ROOT / "tests" / "support", **overrides)


def entries(data: bytes) -> dict[str, bytes]:
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def test_par_layout_and_claims(tmp_path, artifacts):
    data = artifacts.httpserver_par.read_bytes()
    assert data[:2] == b"\x1f\x8b"
    files = entries(data)
    assert sorted(files) == ["claims.jwt", "py3-none-any.bin"]
    header, claims = (json.loads(b64url_decode(p)) for p in files["claims.jwt"].decode().split(".")[:2])
    assert header == {"typ": "jwt", "alg": "Ed25519"}
    assert claims["iss"].startswith("A") and claims["sub"].startswith("V")
    meta = claims["wascap"]
    assert meta["capid"] == "wasmcloud:httpserver" and meta["vendor"] == "waft" and meta["name"] == "HTTP Server"
    assert meta["rev"] == 1 and meta["ver"] == "0.1.0"
    assert meta["target_hashes"] == {"py3-none-any": parlib.target_hash(files["py3-none-any.bin"])}
    import zipfile

    names = zipfile.ZipFile(io.BytesIO(files["py3-none-any.bin"])).namelist()
    assert "__main__.py" in names and "waft-provider.json" in names
    assert "waft_httpserver/__main__.py" in names and "waft_httpserver/provider.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # the same source makes the same target: archives are reproducible up to their claims
    again = make_par(tmp_path)
    assert entries(again)["py3-none-any.bin"] == entries(make_par(tmp_path))["py3-none-any.bin"]


def repack(files: dict[str, bytes], compress: bool = False) -> bytes:
    token = files.pop("claims.jwt").decode()
    return parlib.pack_archive(token, {n.removesuffix(".bin"): d for n, d in files.items()}, compress=compress)


def test_par_refusals(tmp_path):
    good = make_par(tmp_path)
    assert parlib.load_par(good).capid == "waft:test"

    files = entries(good)
    files["py3-none-any.bin"] += b"\0"
    with pytest.raises(parlib.ParError, match="py3-none-any hash mismatch"):
        parlib.load_par(repack(files))

    files = entries(good)
    header, body, signature = files["claims.jwt"].decode().split(".")
    claims = json.loads(b64url_decode(body))
    claims["wascap"]["capid"] = "wasmcloud:keyvalue"
    files["claims.jwt"] = f"{header}.{b64url(json.dumps(claims).encode())}.{signature}".encode()
    with pytest.raises(parlib.ParError, match="Invalid signature"):
        parlib.load_par(repack(files))

    files = entries(good)
    files["x86_64-linux.bin"] = b"\x7fELF"
    with pytest.raises(parlib.ParError, match="not covered by the signed target_hashes"):
        parlib.load_par(repack(files))

    for broken, why in ((b"not a tarball at all" * 40, "malformed provider archive"),
                        (gzip.compress(b"garbage" * 100), "malformed provider archive"),
                        (gzip.compress(good)[:-20], "truncated"),
                        (good[:700], "malformed provider archive"),
                        (repack({"claims.jwt": entries(good)["claims.jwt"]}), "no target binaries"),
                        (_tar_without_claims(good), "no claims.jwt")):
        with pytest.raises(parlib.ParError, match=why):
            parlib.load_par(broken)


def _tar_without_claims(good: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = entries(good)["py3-none-any.bin"]
        info = tarfile.TarInfo("py3-none-any.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_par_create_cli_errors(tmp_path, oci_home):
    out = tmp_path / "x.par"
    missing = run_waft("par", "create", "-c", "waft:test", "-v", "v", "-n", "n", "--module", "nope_not_here",
                       "-d", str(out), home=oci_home)
    assert missing.returncode == 1 and "not importable" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "src" / "lib_only").mkdir(parents=True)
    (tmp_path / "src" / "lib_only" / "__init__.py").write_text("")
    no_main = run_waft("par", "create", "-c", "waft:test", "-v", "v", "-n", "n", "--module", "lib_only",
                       "--source", str(tmp_path / "src"), "-d", str(out), home=oci_home)
    assert no_main.returncode == 1 and "__main__.py" in no_main.stderr
    bad = tmp_path / "bad.par"
    bad.write_bytes(b"\x1f\x8b" + b"junk" * 50)
    inspected = run_waft("par", "inspect", str(bad), home=oci_home)
    assert inspected.returncode == 1 and "malformed provider archive" in inspected.stderr
    pushed = run_waft("reg", "push", "127.0.0.1:1/waft/bad:1", str(bad), "--insecure", home=oci_home)
    assert pushed.returncode == 1 and "malformed provider archive" in pushed.stderr
