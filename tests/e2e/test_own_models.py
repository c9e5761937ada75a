"""A user's own models, with no input spec and no labels, through the whole path (real host, providers,
actors, HTTP, our bindle server): the spec is derived from each model's input, the original's
`/mnist/matches` route feeds 28x28 grey digits, and the answers are index labels.

Every model is built here, none is shipped:
- an NHWC float ONNX classifier and a uint8 28x28x1 ONNX "digit" model with fixed random weights. Untrained,
  so what is checked is that every answer equals onnxruntime run directly on the pixels Pillow makes from the
  same image with the documented spec, the independent reference;
- a real digit reader: a uint8 TF Lite model trained on scikit-learn's `load_digits` by `user_digit_model.py`
  (the user's own script, run as its own process), added with `waft models add digits model.tflite --push`,
  and the same file in a bindle carrying only the original system's metadata JSON. Held to the true digit of
  held-out test pictures, and to LiteRT run directly on Pillow's pixels of the same PNGs.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import pytest_asyncio
from e2e_support import Lattice, chelsea_jpeg, ml_lattice, skip_if_missing, wait_model_ready
from onnx import TensorProto, helper, numpy_helper
from onnx_models import save_model
from PIL import Image

pytestmark = [pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module")]


def nhwc_classifier(path: Path) -> None:
    """float [1,32,32,3] NHWC -> 7 scores: a fixed random linear layer over the pixels."""
    w = np.random.default_rng(1).normal(0, 0.05, (32 * 32 * 3, 7)).astype(np.float32)
    nodes = [helper.make_node("Reshape", ["image", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["scores"])]
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 32, 32, 3])
    graph = helper.make_graph(nodes, "nhwc", [image],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 7])],
                              initializer=[numpy_helper.from_array(w, "w"),
                                           numpy_helper.from_array(np.array([1, -1], np.int64), "shape")])
    save_model(graph, path)


def grey28_model(path: Path) -> None:
    """uint8 [1,28,28,1] (raw grey pixels, as TF Lite digit models take them) -> 10 scores."""
    w = np.random.default_rng(2).normal(0, 0.01, (28 * 28, 10)).astype(np.float32)
    nodes = [helper.make_node("Cast", ["pixels"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Reshape", ["f", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["scores"])]
    graph = helper.make_graph(nodes, "digits", [helper.make_tensor_value_info("pixels", TensorProto.UINT8,
                                                                              [1, 28, 28, 1])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 10])],
                              initializer=[numpy_helper.from_array(w, "w"),
                                           numpy_helper.from_array(np.array([1, -1], np.int64), "shape")])
    save_model(graph, path)


HERE = Path(__file__).resolve().parent
#: What the original system's users put in a model bindle's metadata parcel: its fields only, no Waft
#: `input_spec`, `labels`, `outputs_probabilities` or tensor names.
ORIGINAL_METADATA = {"model_name": "digits", "graph_encoding": "tf_lite", "execution_target": "cpu",
                     "tensor_type": "U8", "tensor_dimensions_in": [1, 28, 28, 1], "tensor_dimensions_out": [1, 10]}
ORIGINAL_ID = "digits-original/0.1.0"


@dataclass
class Served:
    lattice: Lattice
    models: Path  # $WAFT_HOME/models of this module
    user: Path  # what the user's training script wrote: model.tflite, held_out/<digit>.png
    bindle_url: str


def original_bindle(directory: Path, model: Path) -> Path:
    """A bindle directory as the original's users wrote one: the model and the metadata parcel, each in its group."""
    from waft import models

    directory.mkdir(parents=True)
    (directory / model.name).write_bytes(model.read_bytes())
    (directory / models.METADATA_FILE).write_text(json.dumps(ORIGINAL_METADATA))
    name, version = ORIGINAL_ID.split("/")
    parcels = [models.Parcel(directory / model.name, models.MEDIA_TYPES["model"], "model"),
               models.Parcel(directory / models.METADATA_FILE, models.MEDIA_TYPES["metadata"], "metadata")]
    doc = {"bindleVersion": "1.0.0", "bindle": {"name": name, "version": version, "authors": ["a user"]},
           "group": [{"name": p.group, "required": True, "satisfiedBy": "allOf"} for p in parcels],
           "parcel": [{"label": {"sha256": models.sha256_file(p.path), "mediaType": p.media_type, "name": p.path.name,
                                 "size": p.path.stat().st_size}, "conditions": {"memberOf": [p.group]}}
                      for p in parcels]}
    (directory / models.INVOICE_FILE).write_text(models.invoice_toml(doc))
    return directory


async def run(*argv: str, env: dict[str, str] | None = None, timeout: float = 240) -> str:
    """A command as its own process (never blocking this loop, which serves the bindle server); its stdout."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, (argv, err.decode(errors="replace")[-4000:])
    return out.decode()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(nats_server: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    skip_if_missing()
    for module in ("tensorflow", "sklearn", "ai_edge_litert"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"python package {module} is not installed")
    from mlinference_support import bindle_server, link_values

    from waft.bindle.client import BindleClient
    from waft.models.store import add_local, push_local, push_model

    tmp = tmp_path_factory.mktemp("own-models")
    home, user = tmp / "home", tmp / "user"
    await run(sys.executable, str(HERE / "user_digit_model.py"), str(user))  # the user's own training
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WAFT_HOME", str(home))  # `models add` keeps models in $WAFT_HOME/models
        for name, build in (("nhwc", nhwc_classifier), ("grey28", grey28_model)):
            file = tmp / f"{name}-download.onnx"
            build(file)
            add_local(name, file)  # what `waft models add NAME FILE` runs (no --spec, no --labels)
        async with bindle_server(tmp / "bindle", routes=()) as bindle:
            await push_local(bindle.url, ["nhwc", "grey28"])
            added = await run(sys.executable, "-m", "waft", "models", "add", "digits", str(user / "model.tflite"),
                              "--push", "--bindle-url", bindle.url, env={**os.environ, "WAFT_HOME": str(home)})
            assert "digits/1.0.0" in added, added
            async with BindleClient(bindle.url) as client:
                await push_model(client, original_bindle(tmp / "original", user / "model.tflite"))
            zoo = {"nhwc": "nhwc/1.0.0", "grey28": "grey28/1.0.0", "digits": "digits/1.0.0"}
            async with ml_lattice(nats_server.url, f"townmodels{os.getpid()}", link_values(zoo, bindle_url=bindle.url),
                                  ready=tuple(zoo)) as lattice:
                yield Served(lattice, home / "models", user, bindle.url)


def top(scores: np.ndarray, k: int) -> list[str]:
    return [str(i) for i in np.argsort(-scores.ravel(), kind="stable")[:k]]


async def listed_models(session: Any, url: str) -> dict[str, dict[str, Any]]:
    async with session.get(f"{url}/models") as response:
        assert response.status == 200
        return {m["name"]: m for m in json.loads(await response.read())["models"]}


async def test_own_models_without_spec_or_labels(served: Served, tmp_path: Path) -> None:
    import aiohttp

    url, models = served.lattice.url, served.models
    jpeg = chelsea_jpeg(tmp_path / "chelsea.jpg")
    photo = Image.open(io.BytesIO(jpeg))
    # The references: Pillow's pixels under the derived specs, run by onnxruntime directly.
    rgb = np.asarray(photo.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR), np.float32)
    nhwc_scores = ort.InferenceSession(str(models / "nhwc" / "nhwc-download.onnx")).run(
        None, {"image": ((rgb - np.float32(127.5)) / np.float32(127.5))[None]})[0]
    grey = np.asarray(photo.convert("L").resize((28, 28), Image.Resampling.BILINEAR), np.uint8)
    digit_scores = ort.InferenceSession(str(models / "grey28" / "grey28-download.onnx")).run(
        None, {"pixels": grey[None, :, :, None]})[0]

    async with aiohttp.ClientSession() as session:
        listed = await listed_models(session, url)
        assert listed["grey28"]["inputSpecSource"] == "derived"
        spec = listed["grey28"]["inputSpec"]
        assert (spec["size"], spec["color"], spec["dtype"], spec["layout"]) == ([28, 28], "GRAY", "u8", "NHWC")
        assert listed["nhwc"]["inputSpec"]["layout"] == "NHWC"

        async def matches(path: str) -> list[dict[str, object]]:
            async with session.put(f"{url}{path}", data=jpeg) as response:
                body = await response.read()
                assert response.status == 200, body
                return json.loads(body)

        # an NHWC model with no labels parcel: index labels, in onnxruntime's order
        assert [m["label"] for m in await matches("/nhwc/matches?k=7")] == top(nhwc_scores, 7)
        # the original's digit route, and the same model through /matches with its derived spec
        assert [m["label"] for m in await matches("/grey28/mnist/matches?k=10")] == top(digit_scores, 10)
        assert [m["label"] for m in await matches("/grey28/matches?k=3")] == top(digit_scores, 3)

        # Triton's statistics extension counts what was just served, from the provider's own clock
        async with session.get(f"{url}/v2/models/grey28/stats") as response:
            assert response.status == 200, await response.read()
            (stats,) = json.loads(await response.read())["model_stats"]
        assert stats["name"] == "grey28" and stats["inference_count"] == stats["execution_count"] == 2
        inference = stats["inference_stats"]
        assert inference["success"]["count"] == 2 and inference["fail"]["count"] == 0
        assert all(inference[k]["ns"] > 0 for k in ("success", "queue", "compute_input", "compute_infer"))
        assert inference["success"]["ns"] >= inference["compute_infer"]["ns"]


def litert_scores(model: Path, png: bytes) -> np.ndarray:
    """The reference: LiteRT run directly on Pillow's grey pixels of the PNG, dequantized with the output's
    own scale and zero point. The output has TF Lite's softmax quantisation (scale 1/256, zero point 0), so it
    already holds probabilities and the answer must carry them as they are, not softmaxed again."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L").resize((28, 28), Image.Resampling.BILINEAR))
    interpreter.set_tensor(inp["index"], pixels[None, :, :, None].astype(np.uint8))
    interpreter.invoke()
    scale, zero = out["quantization"]
    assert (scale, zero) == (1 / 256, 0), out["quantization"]  # the converter's softmax output
    return (np.float32(scale) * (interpreter.get_tensor(out["index"]).astype(np.float32) - np.float32(zero))).ravel()


async def read_digits(session: Any, served: Served, path: str) -> dict[int, list[dict[str, Any]]]:
    """Each held-out digit PNG sent as `curl -T 4.png URL/PATH` sends it; the answers by true digit."""
    answers = {}
    for digit in range(10):
        async with session.put(f"{served.lattice.url}{path}?k=3",
                               data=(served.user / "held_out" / f"{digit}.png").read_bytes()) as response:
            body = await response.read()
            assert response.status == 200, (digit, body)
            answers[digit] = json.loads(body)
    return answers


def check_digits(served: Served, answers: dict[int, list[dict[str, Any]]]) -> None:
    """The true digit first for at least 9 of the 10, and every answer what LiteRT says of the same pixels."""
    model = served.user / "model.tflite"
    right = [digit for digit, matches in answers.items() if matches[0]["label"] == str(digit)]
    assert len(right) >= 9, answers
    for digit, matches in answers.items():
        reference = litert_scores(model, (served.user / "held_out" / f"{digit}.png").read_bytes())
        for m in matches:
            assert m["label"] in [str(i) for i in range(10)], matches
            np.testing.assert_allclose(m["probability"], reference[int(m["label"])], rtol=1e-5, atol=1e-7)
        assert matches[0]["probability"] == pytest.approx(float(reference.max()), rel=1e-5), (digit, matches)


async def test_a_users_tflite_digit_model_reads_held_out_digits(served: Served) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        listed = await listed_models(session, served.lattice.url)
        digits = listed["digits"]
        assert digits["status"] == "ready" and digits["inputSpecSource"] == "derived", digits
        spec = digits["inputSpec"]
        assert (spec["size"], spec["color"], spec["dtype"], spec["layout"]) == ([28, 28], "GRAY", "u8", "NHWC")
        check_digits(served, await read_digits(session, served, "/digits/mnist/matches"))
        check_digits(served, await read_digits(session, served, "/digits/matches"))


async def test_the_same_model_with_only_the_originals_metadata(served: Served) -> None:
    """The link changed to the bindle a user of the original would have pushed: the route reloads from it
    (its bindle id shows in /models) and reads the digits through /digits/matches with a spec derived from
    the model and the original's `tensor_type`/`tensor_dimensions_in`. Last in the module: it re-links."""
    import aiohttp
    from mlinference_support import link_values

    zoo = {"nhwc": "nhwc/1.0.0", "grey28": "grey28/1.0.0", "digits": ORIGINAL_ID}
    await served.lattice.link_models(link_values(zoo, bindle_url=served.bindle_url))
    async with aiohttp.ClientSession() as session:
        for _ in range(1200):  # polls, each answered at once; no timing asserted
            digits = (await listed_models(session, served.lattice.url)).get("digits", {})
            if digits.get("bindleId") == ORIGINAL_ID and digits.get("status") == "ready":
                break
            await asyncio.sleep(0.1)
        assert digits.get("bindleId") == ORIGINAL_ID and digits.get("status") == "ready", digits
        await wait_model_ready(session, served.lattice.url, "digits")
        assert digits["inputSpecSource"] == "derived", digits
        assert (digits["inputSpec"]["size"], digits["inputSpec"]["color"]) == ([28, 28], "GRAY"), digits
        check_digits(served, await read_digits(session, served, "/digits/matches"))
