"""Model files into `$WAFT_HOME/models`, model bindles into a bindle server: what `waft models add|fetch|push`
and `waft up --push-models` share, so the library never needs the CLI to do either.

Why `install` is strict: the zoo files are pinned by the original invoices (sha256 and size), and a
wrong file would only show up later as nonsense predictions or a provider load error. Checking at the
door gives a one-line error that names the file, the expected size and the expected digest.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from waft import models
from waft.bindle.auth import local_credentials_for
from waft.bindle.client import BindleClient, BindleError, transfer_bar
from waft.bindle.invoice import Invoice, InvoiceError
from waft.config import setting
from waft.models.onnx_names import model_io_names

DEFAULT_BINDLE_URL = "http://127.0.0.1:8080/v1"


class ModelStoreError(models.ModelsError):
    """A model file cannot be imported or a model bindle cannot be pushed."""


def bindle_base(url: str | None = None) -> str:
    """The bindle server (`url`, `$WAFT_BINDLE_URL`, `$BINDLE_URL`, the local default) with its `/v1` API prefix:
    bindle URLs are conventionally given with it, and accepted here with or without."""
    raw = (setting("bindle_url", DEFAULT_BINDLE_URL, flag=url or None, also=("BINDLE_URL",))
           or DEFAULT_BINDLE_URL).rstrip("/")
    return raw if raw.endswith("/v1") else f"{raw}/v1"


# --- add / fetch -----------------------------------------------------------------------------------

def install(entry: models.ModelEntry, path: Path) -> dict[str, Any]:
    """Verify `path`, copy it into `$WAFT_HOME/models/<route>/` and write metadata, labels and invoice."""
    if entry.sha256 is None:
        raise ModelStoreError(f"{entry.route} is built from source by `make models`; there is no file to add")
    if not path.is_file():
        raise ModelStoreError(f"{path}: no such file")
    try:
        sha = models.verify_file(path, entry)
    except models.ModelFileMismatch as exc:
        raise ModelStoreError(f"refusing {path}: {exc}") from None
    directory, target = _copy_in(path, entry.route, entry.model_file)
    input_name, output_name = tensor_names(entry, target)
    models.write_model_dir(entry, directory, input_name=input_name, output_name=output_name)
    return {"route": entry.route, "bindle_id": entry.bindle_id, "sha256": sha, "path": str(directory)}


#: How a model file's name says its engine (the original's `graph_encoding` values).
ENCODING_BY_SUFFIX = {".onnx": "onnx", ".pb": "tensorflow", ".tflite": "tf_lite"}
#: Most bytes read from a labels file: one label per line, far more than any classifier's classes.
MAX_LABELS_BYTES = 4 << 20
_ROUTE_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")


def add_local(name: str, path: Path, *, labels: Path | None = None, spec: dict[str, Any] | None = None,
              version: str = "1.0.0") -> dict[str, Any]:
    """Any local ONNX, TensorFlow-1 or TF Lite file as model bindle `NAME/version` in `$WAFT_HOME/models/NAME`:
    the model, metadata with the original's fields (an `input_spec` only when given: the provider derives
    one from the model otherwise) and the labels when given. A zoo name keeps its pinned-file check."""
    if name in models.REGISTRY and models.REGISTRY[name].sha256 is not None:
        if labels is not None or spec is not None:
            raise ModelStoreError(f"{name} is a model-zoo name with its own labels and spec; pick another name")
        return install(models.REGISTRY[name], path)
    if not name or not set(name) <= _ROUTE_CHARS or name[0] in "-_":
        raise ModelStoreError(f"model name {name!r}: use lower-case letters, digits, '-' and '_' (it is a URL path)")
    if name in models.REGISTRY:
        raise ModelStoreError(f"{name} is built by `make models`; pick another name")
    if not path.is_file():
        raise ModelStoreError(f"{path}: no such file")
    encoding = ENCODING_BY_SUFFIX.get(path.suffix.lower())
    if encoding is None:
        raise ModelStoreError(f"{path.name}: unknown model format; expected one of {', '.join(ENCODING_BY_SUFFIX)}")
    input_spec = None
    if spec is not None:
        try:
            input_spec = models.InputSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})
        except TypeError as exc:
            raise ModelStoreError(f"bad --spec: {exc} (fields: size, layout, resize, resize_to, crop, mean, std, "
                                  "dtype, color, resample)") from None
        _check_spec(input_spec)
    if labels is not None:
        if not labels.is_file():
            raise ModelStoreError(f"{labels}: no such labels file")
        with labels.open("rb") as f:
            text = f.read(MAX_LABELS_BYTES + 1)
        if len(text) > MAX_LABELS_BYTES:
            raise ModelStoreError(f"{labels}: over {MAX_LABELS_BYTES} bytes; one label per line")
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelStoreError(f"{labels}: not UTF-8 text") from None
    entry = models.ModelEntry(route=name, bindle_name=name, bindle_version=version,
                              description=f"{name}, added from {path.name}", model_file=path.name,
                              graph_encoding=encoding, dims_in=(), dims_out=(), input_name=None, output_name=None,
                              source="user", input_spec=input_spec, labels="user" if labels is not None else None,
                              outputs_probabilities=None,  # the file does not say; the provider sees its outputs
                              tensor_type=input_spec.dtype.upper() if input_spec else "F32")
    try:  # read before anything is written: a file that is not a model leaves nothing behind
        input_name, output_name = tensor_names(entry, path)
    except Exception as exc:
        raise ModelStoreError(f"{path.name} is not a readable {encoding} model: {exc}") from None
    directory, target = _copy_in(path, name, path.name)
    models.write_model_dir(entry, directory, input_name=input_name, output_name=output_name, labels_file=labels)
    return {"route": name, "bindle_id": entry.bindle_id, "sha256": models.sha256_file(target), "path": str(directory),
            "input_spec": "given" if input_spec else "derived by the provider"}


_SPEC_WORDS = {"layout": ("NCHW", "NHWC"), "resize": ("shorter_side", "stretch"), "crop": ("center", "none"),
               "dtype": ("f32", "u8"), "color": ("RGB", "BGR", "GRAY", "L"), "resample": ("bilinear", "bicubic")}


def _check_spec(spec: models.InputSpec) -> None:
    """The pre-processor's own rules, checked when the model is added rather than on its first request."""
    for key, allowed in _SPEC_WORDS.items():
        if getattr(spec, key) not in allowed:
            raise ModelStoreError(f"bad --spec: {key} must be one of {', '.join(allowed)}")
    numbers = [*spec.size, spec.resize_to]
    if len(spec.size) != 2 or not all(isinstance(n, int) and 0 < n <= 16384 for n in numbers):
        raise ModelStoreError("bad --spec: size must be [height, width] and resize_to a side, each 1..16384")
    for key in ("mean", "std"):
        values = getattr(spec, key)
        if len(values) != 3 or not all(isinstance(v, int | float) for v in values):
            raise ModelStoreError(f"bad --spec: {key} must be three numbers (one per channel)")
    if any(v == 0 for v in spec.std):
        raise ModelStoreError("bad --spec: std must be non-zero")


def _copy_in(path: Path, route: str, file_name: str) -> tuple[Path, Path]:
    """`path` as `$WAFT_HOME/models/<route>/<file_name>`, written to a part file and renamed, so a
    half-copied model is never in place; (the model's directory, the file)."""
    directory = models.user_dir() / route
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / file_name
    if path.resolve() != target.resolve():
        part = directory / f".{file_name}.part"
        shutil.copyfile(path, part)
        part.replace(target)
    return directory, target


def tensor_names(entry: models.ModelEntry, path: Path) -> tuple[str | None, str | None]:
    """The graph's real first input and output names (the zoo files name them differently)."""
    if entry.graph_encoding != "onnx":
        return entry.input_name, entry.output_name
    return model_io_names(path)


async def fetch(entry: models.ModelEntry, urls: Sequence[str] = (), *, timeout: float = 120.0,
                progress: bool = False) -> dict[str, Any]:
    """Download the entry's file (from `urls`, else the registry's) and `install` it; the first good source wins.
    `progress`: a bar on stderr for a large file (the CLI asks for one on a terminal)."""
    urls = list(urls) or list(entry.urls)
    if not urls:
        raise ModelStoreError(f"{entry.route} has no download URL; it is built by `make models`")
    directory = models.user_dir() / entry.route
    directory.mkdir(parents=True, exist_ok=True)
    part = directory / f".{entry.model_file}.download"
    errors: list[str] = []
    try:
        for url in urls:
            try:
                await _download(url, part, timeout, progress)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                errors.append(f"{url}: {type(exc).__name__}: {exc}".rstrip(": "))
                continue
            return install(entry, part)
    finally:
        part.unlink(missing_ok=True)
    raise ModelStoreError(f"cannot download {entry.model_file} ({'; '.join(errors)}); on a machine without "
                          f"network, copy the file here and run `waft models add {entry.route} FILE`")


async def _download(url: str, target: Path, timeout: float, progress: bool = False) -> None:
    client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 15.0))
    async with aiohttp.ClientSession(timeout=client_timeout) as session, session.get(url) as resp:
        if resp.status != 200:
            raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status, message=resp.reason or "")
        with transfer_bar(f"download {target.name.removeprefix('.').removesuffix('.download')}",
                          resp.content_length, progress) as advance, target.open("wb") as f:
            async for chunk in resp.content.iter_chunked(1 << 20):
                f.write(chunk)
                advance(len(chunk))


# --- push ------------------------------------------------------------------------------------------

async def push_model(client: BindleClient, directory: Path) -> dict[str, Any]:
    """Create the invoice (or reuse it) and upload the parcels the server lacks; a re-push is a no-op."""
    invoice = Invoice.from_toml((directory / models.INVOICE_FILE).read_text())
    files = {p.label.sha256: directory / p.label.name for p in invoice.parcels or []}
    result = await client.push(invoice, files)
    if result.missing:
        names = ", ".join(label.name for label in result.missing)
        raise ModelStoreError(f"{directory}: the server still lacks {names}")
    return {"route": directory.name, "bindle_id": str(invoice.id),
            "invoice": "created" if result.created else "exists",
            "uploaded": len(result.uploaded), "present": len(files) - len(result.uploaded)}


async def push_local(bindle_url: str | None = None, routes: Sequence[str] = (), *,
                     models_dir: str | Path | None = None,
                     auth: tuple[str, str] | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Push `routes` (default: every built or imported model, which may be none) to the bindle server; one
    result row per route pushed. `progress`: the bindle client's bar on stderr for each large parcel."""
    local = dict(models.local_models(models_dir))
    routes = list(routes) or list(local)
    missing = [r for r in routes if r not in local]
    if missing:
        raise ModelStoreError(f"no built or imported copy of {', '.join(missing)}; run `make models` or "
                              "`waft models add NAME FILE` first")
    if not routes:
        return []
    base = bindle_base(bindle_url)
    results = []
    # a loopback server started by `waft up` wants its stored credentials for the push
    async with BindleClient(base, auth=auth, write_auth=local_credentials_for(base), progress=progress) as client:
        for route in routes:
            try:
                results.append(await push_model(client, local[route]))
            except (BindleError, InvoiceError) as exc:
                raise ModelStoreError(f"bindle server {base}: pushing {route}: {exc}") from None
    return results
