"""Push and pull actors and provider archives: oras-py's registry client, wasmCloud's media types.

Every artifact is one OCI image manifest with one layer and a `{}` config blob, exactly as
`wash reg push` writes it (bindle-oci §8.2), so wash and a wasmCloud host can pull what Waft pushes
and the other way round. Blobs are uploaded POST-then-PUT and downloaded streaming; both report
progress through an optional callback `progress(label, done_bytes, total_bytes)`.

oras-py retries every failed request five times with sleeps of 3 to 83 seconds, which turns "the
registry is down" into minutes of silence; our client sends each request once, with timeouts.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import oras.auth
import oras.container
import oras.provider
import oras.utils
import requests

from waft.config import int_setting
from waft.oci import cache
from waft.oci.refs import OciError, OciRef, check_latest

ACTOR_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
ACTOR_CONFIG = "application/vnd.wasmcloud.actor.archive.config"
PROVIDER_LAYER = "application/vnd.wasmcloud.provider.archive.layer.v1+par"
PROVIDER_CONFIG = "application/vnd.wasmcloud.provider.archive.config"
OCI_TAR_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
ACCEPTED_LAYERS = (ACTOR_LAYER, PROVIDER_LAYER, OCI_TAR_LAYER)
TITLE = "org.opencontainers.image.title"
EMPTY_CONFIG = b"{}"
TIMEOUT = (10.0, 120.0)  # connect, read
#: The most a pulled layer may be: generous for a provider archive, far below what would hurt a host.
MAX_BLOB_BYTES = 256 << 20
#: distribution refuses manifests over 4 MiB when they are pushed, so a larger answer is not one.
MAX_MANIFEST_BYTES = 4 << 20
CHUNK = 256 * 1024

Progress = Callable[[str, int, int], None]
T = TypeVar("T")


def max_blob_bytes() -> int:
    """`WAFT_OCI_MAX_BLOB_BYTES`: a layer declaring more is refused before a byte of it is fetched."""
    return int_setting("oci_max_blob_bytes", MAX_BLOB_BYTES)


def max_manifest_bytes() -> int:
    return int_setting("oci_max_manifest_bytes", MAX_MANIFEST_BYTES)


@dataclass(frozen=True)
class Artifact:
    """A pulled artifact: its bytes (digest-checked), what it is, and where it came from."""

    ref: OciRef
    kind: str  # "actor" | "provider"
    data: bytes
    media_type: str
    layer_digest: str
    manifest_digest: str
    cached: bool  # True when the layer came from the local cache instead of the network


#: A registry user and password (`waft reg -u/-p`, `WASH_REG_USER`/`WASH_REG_PASSWORD`).
Credentials = tuple[str, str]


class _Client(oras.provider.Registry):
    """oras-py's Registry without its retry loop, with timeouts, and with credentials for either challenge:
    a registry asking for Basic gets them on every later request (as docker and wash send them), one
    asking for a Bearer token gets them on the token request (oras's token dance)."""

    def __init__(self, *, hostname: str, insecure: bool, credentials: Credentials | None = None) -> None:
        super().__init__(hostname=hostname, insecure=insecure)
        self._credentials = credentials
        self._basic: str | None = None
        if credentials:
            self.auth.set_basic_auth(*credentials)

    def do_request(self, url: str, method: str = "GET", data: Any = None, headers: dict | None = None,
                   json: dict | None = None, stream: bool = False) -> requests.Response:
        headers = dict(headers or {})
        if self._basic:
            headers["Authorization"] = self._basic
        elif isinstance(self.auth, oras.auth.TokenAuth) and self.auth.token is not None:
            headers.update(self.auth.get_auth_header())

        def send(hdrs: dict) -> requests.Response:
            return self.session.request(method, url, data=data, json=json, headers=hdrs, stream=stream,
                                        verify=self._tls_verify, timeout=TIMEOUT)

        response = send(headers)
        if response.status_code in (401, 403) and not hasattr(data, "read"):
            challenge = response.headers.get("Www-Authenticate", "")
            if challenge.lower().startswith("basic"):
                if not self._credentials or self._basic:
                    return response  # nothing (else) to offer: the caller reports the 401
                user, password = self._credentials
                self._basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
                headers["Authorization"] = self._basic
                return send(headers)
            headers, changed = self.auth.authenticate_request(response, headers)
            if changed:
                response = send(headers)
        return response


class _Reader(io.RawIOBase):
    """A request body that reports how much of it was sent."""

    def __init__(self, data: bytes, label: str, progress: Progress | None) -> None:
        self._view = memoryview(data)
        self._pos = 0
        self._label = label
        self._progress = progress

    def __len__(self) -> int:
        return len(self._view)

    def readable(self) -> bool:
        return True

    def tell(self) -> int:  # requests sizes the body as len() - tell(); RawIOBase's tell() would raise
        return self._pos

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        chunk = bytes(self._view[self._pos:end])
        self._pos = end
        if self._progress:
            self._progress(self._label, self._pos, len(self._view))
        return chunk


def connect(ref: OciRef, *, insecure: bool,
            credentials: Credentials | None = None) -> tuple[_Client, oras.container.Container]:
    client = _Client(hostname=ref.registry, insecure=insecure, credentials=credentials)
    container = oras.container.Container(f"{ref.registry}/{ref.repository}:{ref.tag or 'latest'}"
                                         + (f"@{ref.digest}" if ref.digest else ""), registry=ref.registry)
    return client, container


def _request(client: _Client, ref: OciRef, what: str, call: Callable[[], T]) -> T:
    """Run one request, turning transport failures into an OciError that says what to do."""
    try:
        return call()
    except requests.exceptions.SSLError as exc:
        raise OciError(f"cannot {what}: HTTPS to registry {ref.registry} failed ({_short(exc)}). A registry that "
                       f"serves plain HTTP must be allowed explicitly: --insecure for the CLI, or add "
                       f"{ref.registry} to the host's allowed-insecure list (WAFT_OCI_ALLOWED_INSECURE)") from None
    except requests.exceptions.ConnectionError as exc:
        raise OciError(f"cannot {what}: registry {ref.registry} is unreachable over "
                       f"{client.prefix.upper()} ({_short(exc)})") from None
    except requests.exceptions.Timeout:
        raise OciError(f"cannot {what}: registry {ref.registry} did not answer in time") from None
    except requests.exceptions.RequestException as exc:
        raise OciError(f"cannot {what}: {_short(exc)}") from None


def _short(exc: BaseException) -> str:
    """The useful part of a requests error: `[Errno 111] Connection refused`, `[SSL: …] …`."""
    text = str(exc)
    found = re.search(r"\[(?:Errno -?\d+|SSL[^\]]*)\][^'\")]*", text)
    return (found.group(0) if found else text).split(" (_ssl.c")[0].strip()[:200]


def _read_bounded(response: requests.Response, limit: int, what: str, setting_name: str) -> bytes:
    """The body, refused once it passes `limit` (announced or not): a registry's answer is never buffered whole."""
    announced = response.headers.get("Content-Length", "")
    if announced.isdigit() and int(announced) > limit:
        raise OciError(f"{what} is {announced} bytes, over the limit of {limit} ({setting_name}); refused")
    out = bytearray()
    for chunk in response.iter_content(chunk_size=CHUNK):
        out.extend(chunk)
        if len(out) > limit:
            raise OciError(f"{what} is more than {limit} bytes ({setting_name}); refused")
    return bytes(out)


def _errors(response: requests.Response, body: bytes | None = None) -> str:
    """`CODE: message` of an OCI error body, or the HTTP status."""
    try:
        errors = (json.loads(body) if body is not None else response.json()).get("errors") or []
        parts = [f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict)]
    except (ValueError, AttributeError):
        parts = []
    text = "; ".join(parts) or f"HTTP {response.status_code} {response.reason}"
    if response.status_code == 401:
        text += " (the registry wants credentials: `waft reg -u USER -p PASSWORD`, or WASH_REG_USER/WASH_REG_PASSWORD)"
    return text


def ping(registry: str, *, insecure: bool, credentials: Credentials | None = None) -> dict[str, str]:
    """`GET /v2/`: whether a registry speaks the distribution API."""
    ref = OciRef(registry, "ping")
    client, _ = connect(ref, insecure=insecure, credentials=credentials)
    url = f"{client.prefix}://{registry}/v2/"
    response = _request(client, ref, f"ping {registry}", lambda: client.do_request(url, "GET"))
    if response.status_code != 200:
        raise OciError(f"registry {registry} answered {_errors(response)} to GET /v2/")
    return {"registry": registry, "url": url,
            "api_version": response.headers.get("Docker-Distribution-Api-Version", "")}


def push_target(ref: OciRef | str, *, allow_latest: bool = False) -> OciRef:
    """Where a push may go: a tag (not a digest), and `:latest` only when allowed."""
    ref = OciRef.parse(ref) if isinstance(ref, str) else ref
    if ref.digest:
        raise OciError(f"push to a tag, not a digest: {ref}")
    return check_latest(ref, allow_latest)


def push(ref: OciRef | str, data: bytes, *, kind: str, insecure: bool = False, allow_latest: bool = False,
         filename: str | None = None, progress: Progress | None = None,
         credentials: Credentials | None = None) -> dict[str, Any]:
    """Push an actor (`kind="actor"`) or provider archive (`"provider"`); return what was pushed.

    The kind is the caller's to know (`waft.oci.publish.push` detects it from the bytes), so this layer
    needs neither the claims nor the archive reader."""
    ref = push_target(ref, allow_latest=allow_latest)
    layer_type, config_type = (ACTOR_LAYER, ACTOR_CONFIG) if kind == "actor" else (PROVIDER_LAYER, PROVIDER_CONFIG)
    client, container = connect(ref, insecure=insecure, credentials=credentials)
    layer = {"mediaType": layer_type, "digest": cache.digest_of(data), "size": len(data)}
    if filename:
        layer["annotations"] = {TITLE: filename}
    config = {"mediaType": config_type, "digest": cache.digest_of(EMPTY_CONFIG), "size": len(EMPTY_CONFIG)}
    _upload_blob(client, container, ref, EMPTY_CONFIG, config, "config", None)
    _upload_blob(client, container, ref, data, layer, filename or kind, progress)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
    body = json.dumps(manifest, separators=(",", ":")).encode()
    url = f"{client.prefix}://{container.manifest_url(ref.tag)}"
    response = _request(client, ref, f"push the manifest of {ref}", lambda: client.do_request(
        url, "PUT", data=body, headers={"Content-Type": OCI_MANIFEST}))
    if response.status_code not in (200, 201):
        raise OciError(f"registry refused the manifest of {ref}: {_errors(response)}")
    digest = response.headers.get("Docker-Content-Digest") or cache.digest_of(body)
    return {"ref": str(ref), "kind": kind, "digest": digest, "layer_digest": layer["digest"], "size": len(data),
            "media_type": layer_type}


def _upload_blob(client: _Client, container: oras.container.Container, ref: OciRef, blob: bytes,
                 descriptor: dict[str, Any], label: str, progress: Progress | None) -> None:
    what = f"upload {label} to {ref.registry}"
    head_url = f"{client.prefix}://{container.get_blob_url(descriptor['digest'])}"
    if _request(client, ref, what, lambda: client.do_request(head_url, "HEAD")).status_code == 200:
        if progress:
            progress(label, len(blob), len(blob))
        return
    start = _request(client, ref, what, lambda: client.do_request(
        f"{client.prefix}://{container.upload_blob_url()}", "POST",
        headers={"Content-Type": "application/octet-stream", "Content-Length": "0"}))
    location = client._get_location(start, container) if start.status_code == 202 else ""
    if not location:
        raise OciError(f"cannot {what}: the registry did not open an upload ({_errors(start)})")
    put_url = oras.utils.append_url_params(location, {"digest": descriptor["digest"]})
    body = _Reader(blob, label, progress)
    done = _request(client, ref, what, lambda: client.do_request(
        put_url, "PUT", data=body, headers={"Content-Type": "application/octet-stream",
                                            "Content-Length": str(len(blob))}))
    if done.status_code != 201:
        raise OciError(f"cannot {what}: {_errors(done)}")


def pull(ref: OciRef | str, *, insecure: bool = False, allow_latest: bool = False,
         progress: Progress | None = None, credentials: Credentials | None = None) -> Artifact:
    """Pull an actor or provider archive, through the digest-keyed cache; every byte is digest-checked."""
    ref = OciRef.parse(ref) if isinstance(ref, str) else ref
    ref = check_latest(ref, allow_latest)
    client, container = connect(ref, insecure=insecure, credentials=credentials)
    manifest_bytes = cache.read("manifests", ref.digest) if ref.digest else None
    if manifest_bytes is None:
        manifest_bytes = _fetch_manifest(client, container, ref)
    manifest_digest = ref.digest or cache.digest_of(manifest_bytes)
    layer = _pick_layer(ref, manifest_bytes)
    digest, size, media_type = layer["digest"], layer["size"], layer["mediaType"]
    data = cache.read("blobs", digest)
    cached = data is not None
    if data is not None and len(data) != size:
        raise OciError(f"size mismatch pulling {ref}: the manifest says {size} bytes, the blob {digest} has "
                       f"{len(data)}; refused")
    if data is None:
        data = _download(client, container, ref, digest, size, progress)
        cache.write("blobs", digest, data)
    elif progress:
        progress(ref.name, len(data), len(data))
    if media_type == ACTOR_LAYER:
        kind = "actor"
    elif media_type == PROVIDER_LAYER:
        kind = "provider"
    else:
        kind = "actor" if data.startswith(b"\0asm") else "provider"
    return Artifact(ref, kind, data, media_type, digest, manifest_digest, cached)


def _fetch_manifest(client: _Client, container: oras.container.Container, ref: OciRef) -> bytes:
    url = f"{client.prefix}://{container.manifest_url(ref.reference)}"
    limit = max_manifest_bytes()

    def fetch() -> tuple[requests.Response, bytes]:
        response = client.do_request(url, "GET", stream=True, headers={
            "Accept": ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, *INDEX_TYPES))})
        with response:
            return response, _read_bounded(response, limit, f"the manifest of {ref}", "WAFT_OCI_MAX_MANIFEST_BYTES")

    response, body = _request(client, ref, f"pull {ref}", fetch)
    if response.status_code == 404:
        raise OciError(f"{ref} not found in the registry: no such repository, tag or digest "
                       f"({_errors(response, body)})")
    if response.status_code != 200:
        raise OciError(f"cannot pull {ref}: {_errors(response, body)}")
    if ref.digest and cache.digest_of(body) != ref.digest:
        raise OciError(f"the registry answered {ref} with a manifest whose digest is {cache.digest_of(body)}; "
                       "refused")
    if ref.digest:
        cache.write("manifests", ref.digest, body)
    return body


def _pick_layer(ref: OciRef, manifest_bytes: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        raise OciError(f"the manifest of {ref} is not JSON") from None
    if not isinstance(manifest, dict):
        raise OciError(f"the manifest of {ref} is not a JSON object")
    if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
        raise OciError(f"{ref} is an image index (a multi-platform image), not a wasmCloud artifact")
    layers = [layer for layer in manifest.get("layers") or [] if isinstance(layer, dict)]
    wanted = [layer for layer in layers if layer.get("mediaType") in ACCEPTED_LAYERS]
    if len(wanted) != 1:
        found = ", ".join(str(layer.get("mediaType")) for layer in layers) or "none"
        raise OciError(f"{ref} is not an actor or provider archive: expected one layer of "
                       f"{', '.join(ACCEPTED_LAYERS)}; found {found}")
    layer = wanted[0]
    if not isinstance(layer.get("digest"), str):
        raise OciError(f"the manifest of {ref} has a layer without a digest")
    size, limit = layer.get("size"), max_blob_bytes()
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise OciError(f"the manifest of {ref} has a layer without a valid size ({size!r})")
    if size > limit:
        raise OciError(f"{ref} is {size} bytes, over the limit of {limit} (WAFT_OCI_MAX_BLOB_BYTES); refused "
                       "before downloading it")
    return layer


def _download(client: _Client, container: oras.container.Container, ref: OciRef, digest: str,
              size: int, progress: Progress | None) -> bytes:
    """Stream the blob, stopping the moment it passes the size the manifest declared (already bounded)."""
    what = f"pull {ref}"
    url = f"{client.prefix}://{container.get_blob_url(digest)}"
    hasher = hashlib.sha256()
    out = bytearray()

    def fetch() -> None:
        response = client.do_request(url, "GET", stream=True)
        with response:
            if response.status_code != 200:
                body = _read_bounded(response, MAX_MANIFEST_BYTES, f"the error answer to {what}", "error bodies")
                raise OciError(f"cannot {what}: blob {digest}: {_errors(response, body)}")
            announced = response.headers.get("Content-Length", "")
            if announced.isdigit() and int(announced) != size:
                raise OciError(f"size mismatch pulling {ref}: the manifest says {size} bytes, the registry "
                               f"announces {announced}; refused")
            for chunk in response.iter_content(chunk_size=CHUNK):
                if len(out) + len(chunk) > size:
                    raise OciError(f"size mismatch pulling {ref}: the registry sent more than the {size} bytes the "
                                   "manifest says; refused")
                hasher.update(chunk)
                out.extend(chunk)
                if progress:
                    progress(ref.name, len(out), size)

    _request(client, ref, what, fetch)
    if size != len(out):
        raise OciError(f"size mismatch pulling {ref}: the manifest says {size} bytes, got {len(out)}")
    actual = "sha256:" + hasher.hexdigest()
    if actual != digest:
        raise OciError(f"digest mismatch pulling {ref}: the manifest says {digest}, the registry sent bytes "
                       f"hashing to {actual}; refused")
    return bytes(out)
