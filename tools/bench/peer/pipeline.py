"""A JPEG/PNG body -> top-k ImageNet matches, in plain Python: Pillow, numpy, onnxruntime.

What a user would write for a model directory built by `make models` (model file, metadata.json,
labels.txt): decode with Pillow (a JPEG much larger than needed decoded at 1/2, 1/4 or 1/8 scale with
draft(), as Waft's pre-processor does, other formats box-reduced by the same scale), then the metadata's
input_spec (shorter side to `resize_to` with its `resample` filter, bilinear unless it names bicubic;
centre crop; (pixel - mean) / std; NCHW float32), one onnxruntime session with default options, then
softmax and top-k with the labels.
`preprocess` is Waft's reference `waft.models.preprocess` step for step, but this file imports nothing
from waft: the peer's virtualenv runs it as a plain module.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

ORIENTATION = 0x0112  # the EXIF tag
RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def preprocess(image: Image.Image, spec: dict[str, Any]) -> np.ndarray:
    """A PIL image -> the (1, 3, H, W) or (1, H, W, 3) float32 tensor `spec` describes."""
    if spec["resize"] != "shorter_side" or spec["crop"] != "center" or spec["dtype"] != "f32":
        raise ValueError(f"unsupported input spec {spec}")
    image = image.convert(spec["color"])
    width, height = image.size
    target = int(spec["resize_to"])
    if width <= height:
        new_size = (target, int(target * height / width))
    else:
        new_size = (int(target * width / height), target)
    image = image.resize(new_size, RESAMPLE[spec.get("resample", "bilinear")])
    crop_h, crop_w = spec["size"]
    left, top = round((new_size[0] - crop_w) / 2.0), round((new_size[1] - crop_h) / 2.0)
    image = image.crop((left, top, left + crop_w, top + crop_h))
    pixels = np.asarray(image, dtype=np.float32)
    pixels = (pixels - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
    if spec["layout"] == "NCHW":
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels[None], dtype=np.float32)


def jpeg_scale(width: int, height: int, spec: dict[str, Any]) -> int:
    """The largest DCT scale (8, 4, 2, 1) whose decoded shorter side still covers `resize_to`: what Waft's
    pre-processor decodes a JPEG at (actors/preprocessor/preprocessor.c, draft_denom)."""
    target = int(spec["resize_to"])
    return next((d for d in (8, 4, 2) if min(-(-width // d), -(-height // d)) >= target), 1)


def rgb(image: Image.Image) -> Image.Image:
    """convert("RGB") only when needed: to the same mode it is a whole copy of the image."""
    return image if image.mode == "RGB" else image.convert("RGB")


def decode(image: Image.Image, spec: dict[str, Any]) -> Image.Image:
    """Decode as Waft does: a JPEG much larger than needed is decoded scaled down in the IDCT (Pillow's
    draft(), libjpeg's DCT scaling: less work, and Waft's answers exactly), then EXIF orientation applied;
    any other format is box-reduced by the same scale (Pillow's reduce()), so one photo answers the same
    whatever its format."""
    if image.format == "JPEG":
        orientation = image.getexif().get(ORIENTATION, 1)
        scale = jpeg_scale(*(image.size[::-1] if orientation in (5, 6, 7, 8) else image.size), spec)
        if scale > 1:
            image.draft("RGB", (image.size[0] // scale, image.size[1] // scale))
        return rgb(ImageOps.exif_transpose(image) if orientation != 1 else image)
    image = rgb(image)
    scale = jpeg_scale(*image.size, spec)
    return image.reduce(scale) if scale > 1 else image


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def top_k(scores: np.ndarray, labels: list[str], k: int = 5) -> list[dict[str, Any]]:
    """Best first: [{"label": ..., "probability": ...}]."""
    k = max(1, min(k, scores.size))
    best = np.argpartition(-scores, k - 1)[:k]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [{"label": labels[i] if i < len(labels) else str(i), "probability": float(scores[i])} for i in best]


class Pipeline:
    """One model directory, loaded once; `matches(body)` is the whole request's work."""

    def __init__(self, model_dir: Path | str, *, session_options: ort.SessionOptions | None = None) -> None:
        directory = Path(model_dir)
        self.metadata = json.loads((directory / "metadata.json").read_text())
        model_files = sorted(p for p in directory.iterdir() if p.suffix == ".onnx")
        if not model_files:
            raise FileNotFoundError(f"no .onnx model in {directory}")
        self.spec = self.metadata["input_spec"]
        labels = directory / "labels.txt"
        self.labels = labels.read_text().splitlines() if labels.is_file() else []
        self.session = ort.InferenceSession(str(model_files[0]), sess_options=session_options,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.metadata.get("input_name") or self.session.get_inputs()[0].name
        self.output_name = self.metadata.get("output_name") or self.session.get_outputs()[0].name
        self.probabilities = bool(self.metadata.get("outputs_probabilities"))

    def tensor(self, body: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(body)) as image:
            return preprocess(decode(image, self.spec), self.spec)

    def scores(self, tensor: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run([self.output_name], {self.input_name: tensor})
        flat = np.asarray(logits, dtype=np.float32).reshape(-1)
        return flat if self.probabilities else softmax(flat)

    def matches(self, body: bytes, k: int = 5) -> list[dict[str, Any]]:
        return top_k(self.scores(self.tensor(body)), self.labels, k)
