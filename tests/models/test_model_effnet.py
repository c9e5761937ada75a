"""EfficientNet-Lite0, as converted without torch, classifies real photos plausibly.

The photos ship inside scikit-image's wheel; the expected classes are broad (the cat is a tabby /
tiger cat / Egyptian cat, the coffee an espresso or a cup) because resampling details may shift the
order among close classes, while a broken conversion or normalisation lands far away.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
from skimage import data

from waft import models


def _top5(built_models: Path, route: str, photo: np.ndarray) -> list[int]:
    meta = json.loads((built_models / route / models.METADATA_FILE).read_text())
    session = ort.InferenceSession(str(built_models / route / models.get(route).model_file),
                                   providers=["CPUExecutionProvider"])
    x = models.preprocess(Image.fromarray(photo), meta["input_spec"])
    assert x.shape == tuple(meta["tensor_dimensions_in"])
    (logits,) = session.run([meta["output_name"]], {meta["input_name"]: x})
    assert logits.shape == tuple(meta["tensor_dimensions_out"])
    assert meta["outputs_probabilities"] is False and not np.isclose(logits.sum(), 1.0)
    return [int(i) for i in np.argsort(-logits[0])[:5]]


@pytest.mark.parametrize("route", ["effnetlite0", "effnetlite1", "effnetlite2"])
def test_chelsea_is_a_cat(built_models: Path, route: str) -> None:
    top5 = _top5(built_models, route, data.chelsea())
    assert 281 <= top5[0] <= 285, top5
    assert {281, 282, 285} <= set(top5)


@pytest.mark.parametrize("route", ["effnetlite0", "effnetlite1", "effnetlite2"])
def test_coffee_is_espresso_or_cup(built_models: Path, route: str) -> None:
    top5 = _top5(built_models, route, data.coffee())
    assert top5[0] in (967, 968), top5


def test_labels_name_the_predictions(built_models: Path) -> None:
    labels = (built_models / "effnetlite0" / models.LABELS_FILE).read_text().splitlines()
    top = _top5(built_models, "effnetlite0", data.coffee())[0]
    assert labels[top].startswith("n07920052 espresso")


def test_preprocess_follows_the_spec() -> None:
    """Mean/std, layout and crop of the reference pre-processing, on images whose answer is known."""
    spec = models.tf_lite_spec(224)
    flat = models.preprocess(Image.new("RGB", (300, 500), (127, 255, 0)), spec)
    assert flat.shape == (1, 3, 224, 224) and flat.dtype == np.float32
    assert np.allclose(flat[0, 0], 0.0) and np.allclose(flat[0, 1], 1.0) and np.allclose(flat[0, 2], -127 / 128)
    # left half red, right half blue: after a centre crop the split stays in the middle
    img = np.zeros((256, 512, 3), np.uint8)
    img[:, :256, 0] = 255
    img[:, 256:, 2] = 255
    nhwc = models.preprocess(Image.fromarray(img), {**spec.to_json(), "layout": "NHWC"})
    assert nhwc.shape == (1, 224, 224, 3)
    assert nhwc[0, 112, 100, 0] > 0.9 and nhwc[0, 112, 124, 2] > 0.9
