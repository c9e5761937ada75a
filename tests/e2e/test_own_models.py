"""A user's own models, with no input spec and no labels, through the whole path (real host, providers,
actors, HTTP): the spec is derived from each model's input, the original's `/mnist/matches` route feeds
28x28 grey digits, and the answers are index labels.

The models are built here (not shipped): an NHWC float classifier and a uint8 28x28x1 "digit" model with
fixed random weights. Untrained, so what is checked is that every answer equals onnxruntime run directly
on the pixels Pillow makes from the same image with the documented spec, the independent reference.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

pytestmark = pytest.mark.timeout(300)


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


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
    _save(graph, path)


def digit_model(path: Path) -> None:
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
    _save(graph, path)


def add(name: str, build: object, tmp: Path) -> str:
    """`waft models add NAME FILE` as a user runs it (no --spec, no --labels): the library call it makes."""
    from waft.models.store import add_local

    file = tmp / f"{name}-download.onnx"
    build(file)  # type: ignore[operator]
    return str(add_local(name, file)["bindle_id"])


def top(scores: np.ndarray, k: int) -> list[str]:
    return [str(i) for i in np.argsort(-scores.ravel(), kind="stable")[:k]]


async def test_own_models_without_spec_or_labels(nats_url: str, lattice_prefix: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from test_matches import chelsea_jpeg, missing_part

    reason = missing_part()
    if reason:
        pytest.skip(reason)
    import aiohttp
    from httpserver_support import free_port, wait_serving
    from mlinference_support import link_values
    from waft_testing import built_actor, running_host

    from waft.claims import KeyPair, Role
    from waft.lattice.types import LinkDefinition

    monkeypatch.setenv("WAFT_HOME", str(tmp_path / "home"))  # `models add` keeps models in $WAFT_HOME/models
    zoo = {"nhwc": add("nhwc", nhwc_classifier, tmp_path), "digits": add("digits", digit_model, tmp_path)}
    models = tmp_path / "home" / "models"
    jpeg = chelsea_jpeg(tmp_path / "chelsea.jpg")
    photo = Image.open(io.BytesIO(jpeg))
    # The references: Pillow's pixels under the derived specs, run by onnxruntime directly.
    rgb = np.asarray(photo.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR), np.float32)
    nhwc_scores = ort.InferenceSession(str(models / "nhwc" / "nhwc-download.onnx")).run(
        None, {"image": ((rgb - np.float32(127.5)) / np.float32(127.5))[None]})[0]
    grey = np.asarray(photo.convert("L").resize((28, 28), Image.Resampling.BILINEAR), np.uint8)
    digit_scores = ort.InferenceSession(str(models / "digits" / "digits-download.onnx")).run(
        None, {"pixels": grey[None, :, :, None]})[0]

    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed,
                            rpc_timeout_s=30) as host:
        api = await host.start_actor(str(built_actor("api")))
        await host.start_actor(str(built_actor("preprocessor")))
        await host.start_actor(str(built_actor("postprocessor")))
        ml = await host.start_provider("python:waft_mlinference")
        web = await host.start_provider("python:waft_httpserver")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        await host.put_link(LinkDefinition(api.public_key, ml.public_key, "wasmcloud:mlinference", "default",
                                           link_values(zoo, model_dir=models)))
        await host.put_link(LinkDefinition(api.public_key, web.public_key, "wasmcloud:httpserver", "default",
                                           {"address": f"127.0.0.1:{port}"}))
        await wait_serving(f"{url}/healthz")
        async with aiohttp.ClientSession() as session:
            from test_matches import wait_model_ready

            for route in zoo:
                await wait_model_ready(session, url, route)
            async with session.get(f"{url}/models") as response:
                listed = {m["name"]: m for m in json.loads(await response.read())["models"]}
            assert listed["digits"]["inputSpecSource"] == "derived"
            spec = listed["digits"]["inputSpec"]
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
            assert [m["label"] for m in await matches("/digits/mnist/matches?k=10")] == top(digit_scores, 10)
            assert [m["label"] for m in await matches("/digits/matches?k=3")] == top(digit_scores, 3)

            # Triton's statistics extension counts what was just served, from the provider's own clock
            async with session.get(f"{url}/v2/models/digits/stats") as response:
                assert response.status == 200, await response.read()
                (stats,) = json.loads(await response.read())["model_stats"]
            assert stats["name"] == "digits" and stats["inference_count"] == stats["execution_count"] == 2
            inference = stats["inference_stats"]
            assert inference["success"]["count"] == 2 and inference["fail"]["count"] == 0
            assert all(inference[k]["ns"] > 0 for k in ("success", "queue", "compute_input", "compute_infer"))
            assert inference["success"]["ns"] >= inference["compute_infer"]["ns"]
