"""The end-to-end benchmark's baseline pipeline (what the peer serves and the in-process figures run).

No peer venv is needed here: the pipeline is plain Pillow + numpy + onnxruntime, importable from .venv.
"""

from __future__ import annotations

import io
import subprocess
import time

import numpy as np
import pytest
import yaml
from PIL import Image

from tools.bench import e2e, peer_setup
from tools.bench.peer.pipeline import Pipeline, decode, preprocess
from waft import models

MODEL_DIR = peer_setup.MODEL_DIR
needs_model = pytest.mark.skipif(not (MODEL_DIR / "efficientnet-lite0.onnx").is_file(),
                                 reason="effnetlite0 not built (make models)")


def jpeg(name: str) -> bytes:
    """A scikit-image sample photo as the benchmark encodes it: JPEG, quality 90."""
    import skimage.data

    out = io.BytesIO()
    Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(out, format="JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return peer_setup.in_process_pipeline()


def top1(pipeline: Pipeline, body: bytes) -> int:
    return int(np.argmax(pipeline.scores(pipeline.tensor(body))))


@needs_model
def test_chelsea_is_a_cat(pipeline: Pipeline) -> None:
    assert 281 <= top1(pipeline, jpeg("chelsea")) <= 285


@needs_model
def test_coffee_is_espresso_or_cup(pipeline: Pipeline) -> None:
    assert top1(pipeline, jpeg("coffee")) in (967, 968)


@needs_model
def test_matches_are_waft_json(pipeline: Pipeline) -> None:
    matches = pipeline.matches(jpeg("chelsea"))
    assert len(matches) == 5
    assert [set(m) for m in matches] == [{"label", "probability"}] * 5
    assert matches[0]["label"] == pipeline.labels[top1(pipeline, jpeg("chelsea"))]
    probabilities = [m["probability"] for m in matches]
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0 < sum(probabilities) <= 1.0 + 1e-6
    assert len(pipeline.matches(jpeg("coffee"), k=2)) == 2


@pytest.mark.parametrize("size", [(451, 300), (300, 451), (256, 256), (640, 427)])
def test_preprocess_is_the_reference(size: tuple[int, int]) -> None:
    """The peer's copy of the preprocessing is Waft's reference, bit for bit."""
    rng = np.random.default_rng(sum(size))
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    spec = models.tf_lite_spec(224).to_json()
    np.testing.assert_array_equal(preprocess(image, spec), models.preprocess(image, spec))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_decode_is_the_reference(fmt: str) -> None:
    """The peer's decode (draft for a JPEG, reduce for the rest) is waft.models.decode's, pixel for pixel."""
    rng = np.random.default_rng(7)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (1100, 900, 3), dtype=np.uint8)).save(buf, fmt)
    spec = models.tf_lite_spec(224).to_json()
    ours = np.asarray(decode(Image.open(io.BytesIO(buf.getvalue())), spec))
    assert ours.shape[0] < 1100  # scaled: the case exercises the rule
    np.testing.assert_array_equal(ours, np.asarray(models.decode(Image.open(io.BytesIO(buf.getvalue())), spec)))


def test_bench_manifest_moves_the_port_and_keeps_one_model(tmp_path) -> None:
    doc = yaml.safe_load(e2e.bench_manifest(18123, tmp_path / "app.yaml").read_text())
    http = [link for link in doc["links"] if link["contract"] == "wasmcloud:httpserver"]
    assert http and all(link["values"]["address"] == "127.0.0.1:18123" for link in http)
    for actor in doc["actors"]:
        assert actor["image"].startswith("/"), actor
    ml = [link for link in doc["links"] if link["contract"] == "wasmcloud:mlinference"]
    for link in ml:
        assert '"effnetlite1"' not in link["values"]["config_json"]


def test_stop_group_stops_grandchildren() -> None:
    child = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"], start_new_session=True)
    time.sleep(0.2)
    peer_setup.stop_group(child, timeout=5)
    assert child.poll() is not None
    with pytest.raises(ProcessLookupError):
        import os

        os.killpg(child.pid, 0)


@pytest.mark.parametrize(("size", "scale"), [((512, 512), 2), ((511, 800), 2), ((1030, 2100), 4), ((2100, 2100), 8),
                                             ((500, 300), 1), ((300, 450), 1)])
def test_large_jpegs_decode_scaled_as_waft_does(size: tuple[int, int], scale: int) -> None:
    """Waft's pre-processor decodes JPEGs at the largest DCT scale still covering resize_to; so does the peer."""
    from tools.bench.peer.pipeline import decode, jpeg_scale

    spec = models.tf_lite_spec(224).to_json()
    assert jpeg_scale(*size, spec) == scale
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 60)).save(out, format="JPEG", quality=90)
    with Image.open(io.BytesIO(out.getvalue())) as image:
        decoded = decode(image, spec)
        assert decoded.size == (-(-size[0] // scale), -(-size[1] // scale))
