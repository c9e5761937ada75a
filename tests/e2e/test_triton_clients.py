"""Triton's own tools against Waft's /v2, through the whole path (real host, providers, actors, HTTP): PyPI
`tritonclient[http]` for every route and extension Waft lists, and `perf_analyzer` (shipped in tritonclient's
wheel) for a short load run.

The wire formats are those of the KServe v2 / Open Inference Protocol and Triton's extensions ("Binary Tensor
Data Extension", "Classification Extension", "Model Repository Extension", "Model Configuration Extension",
"Statistics Extension"); tritonclient is the independent reader of them. The models are built here with
onnx.helper (a model with two inputs of different types and two outputs, and a ten-class scorer with a labels
parcel) and every answer is compared with onnxruntime run directly on the same arrays; the same two-input,
two-output computation as a TF1 graph and as TF Lite is compared with TensorFlow run directly.
"""

from __future__ import annotations

import asyncio
import csv
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from e2e_support import ml_lattice, skip_if_missing
from onnx_models import LABELS, direct, scorer, two_in_two_out
from tf_models import direct_graph, direct_lite, frozen_graph, lite_model, short_name

pytestmark = [pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module")]


@dataclass
class Served:
    address: str  # host:port of Waft's HTTP
    files: dict[str, Path]  # the model files, for onnxruntime


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(nats_server: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    """One lattice for the module serving `twoio` and `scorer`, added as a user adds models."""
    skip_if_missing()
    from mlinference_support import link_values

    from waft.models.store import add_local

    tmp = tmp_path_factory.mktemp("triton")
    files = {"twoio": tmp / "twoio.onnx", "scorer": tmp / "scorer.onnx", "twoio_pb": tmp / "twoio.pb",
             "twoio_lite": tmp / "twoio.tflite"}
    two_in_two_out(files["twoio"])
    scorer(files["scorer"])
    frozen_graph(files["twoio_pb"])
    lite_model(files["twoio_lite"])
    labels = tmp / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WAFT_HOME", str(tmp / "home"))  # `models add` keeps models in $WAFT_HOME/models
        zoo = {"twoio": str(add_local("twoio", files["twoio"])["bindle_id"]),
               "scorer": str(add_local("scorer", files["scorer"], labels=labels)["bindle_id"]),
               **{name: str(add_local(name, files[name])["bindle_id"]) for name in ("twoio_pb", "twoio_lite")}}
        async with ml_lattice(nats_server.url, f"ttriton{os.getpid()}",
                              link_values(zoo, model_dir=tmp / "home" / "models"), ready=tuple(zoo)) as lattice:
            yield Served(lattice.url.removeprefix("http://"), files)


def model_stats(client: Any, model: str) -> dict[str, Any]:
    (stats,) = client.get_inference_statistics(model)["model_stats"]
    return stats


def exercise_tritonclient(address: str, files: dict[str, Path]) -> None:
    """Every route and extension through tritonclient.http, each answer checked against onnxruntime."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from waft import __version__

    client = httpclient.InferenceServerClient(address)
    try:
        before = {m: model_stats(client, m) for m in ("twoio", "scorer")}  # the module's other test may run first
        server = client.get_server_metadata()
        assert server["version"] == __version__
        assert {"binary_tensor_data", "classification", "model_repository", "model_configuration",
                "statistics"} <= set(server["extensions"])
        assert client.is_server_live() and client.is_server_ready()

        # metadata and configuration list both inputs and both outputs
        meta = client.get_model_metadata("twoio")
        assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [("a", "FP32", [2, 3]),
                                                                                    ("b", "INT64", [2, 3])]
        assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [("total", "FP32", [2, 3]),
                                                                                     ("proj", "FP32", [2, 4])]
        config = client.get_model_config("twoio")
        assert config["max_batch_size"] == 0
        assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [("a", "TYPE_FP32", [2, 3]),
                                                                                    ("b", "TYPE_INT64", [2, 3])]
        assert [o["name"] for o in config["output"]] == ["total", "proj"]

        # a version that does not exist is Triton's 404 with the message in `error`
        with pytest.raises(InferenceServerException) as missing:
            client.get_model_metadata("twoio", model_version="2")
        assert missing.value.status() == "404" and "version" in missing.value.message()

        rng = np.random.default_rng(7)
        a = rng.normal(0, 1, (2, 3)).astype(np.float32)
        b = rng.integers(-50, 50, (2, 3)).astype(np.int64)
        want = direct(files["twoio"], {"a": a, "b": b})

        def inputs(binary: bool) -> list[Any]:
            ia, ib = httpclient.InferInput("a", [2, 3], "FP32"), httpclient.InferInput("b", [2, 3], "INT64")
            ia.set_data_from_numpy(a, binary_data=binary)
            ib.set_data_from_numpy(b, binary_data=binary)
            return [ia, ib]

        # binary input, binary output of both outputs
        outputs = [httpclient.InferRequestedOutput("total", binary_data=True),
                   httpclient.InferRequestedOutput("proj", binary_data=True)]
        result = client.infer("twoio", inputs(True), outputs=outputs, request_id="r1")
        assert result.get_response()["id"] == "r1"
        assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
        np.testing.assert_array_equal(result.as_numpy("total"), want["total"])
        np.testing.assert_array_equal(result.as_numpy("proj"), want["proj"])
        # JSON input and a requested JSON output: only that one comes back
        result = client.infer("twoio", inputs(False), outputs=[httpclient.InferRequestedOutput("proj",
                                                                                               binary_data=False)])
        assert [o["name"] for o in result.get_response()["outputs"]] == ["proj"]
        assert "data" in result.get_response()["outputs"][0] and result.as_numpy("total") is None
        np.testing.assert_array_equal(result.as_numpy("proj"), want["proj"])
        # no outputs named: tritonclient asks binary_data_output and gets every output in binary
        result = client.infer("twoio", inputs(True))
        assert [o["name"] for o in result.get_response()["outputs"]] == ["total", "proj"]
        assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
        np.testing.assert_array_equal(result.as_numpy("total"), want["total"])
        # an output the model does not have is a 400 naming it
        with pytest.raises(InferenceServerException) as unknown:
            client.infer("twoio", inputs(True), outputs=[httpclient.InferRequestedOutput("nope")])
        assert unknown.value.status() == "400" and "nope" in unknown.value.message()

        # the classification extension: the top 3 of each row as "value:index:label", labels from the parcel
        x = rng.normal(0, 1, (2, 6)).astype(np.float32)
        scores = direct(files["scorer"], {"x": x})["scores"]
        ix = httpclient.InferInput("x", [2, 6], "FP32")
        ix.set_data_from_numpy(x, binary_data=True)
        for binary in (True, False):
            result = client.infer("scorer", [ix], outputs=[httpclient.InferRequestedOutput(
                "scores", binary_data=binary, class_count=3)])
            classes = result.as_numpy("scores")
            assert classes.shape == (2, 3)
            for row in range(2):
                top = np.argsort(-scores[row], kind="stable")[:3]
                got = [c.decode() if isinstance(c, bytes) else str(c) for c in classes[row]]
                assert [g.split(":")[1:] for g in got] == [[str(i), LABELS[i]] for i in top]
                assert [np.float32(g.split(":")[0]) for g in got] == [scores[row][i] for i in top]

        # statistics count what was served: three requests to twoio succeeded, the one naming `nope` failed unrun
        stats = model_stats(client, "twoio")
        assert stats["name"] == "twoio" and stats["version"] == "1"

        def grew(after: dict[str, Any], model: str, *path: str) -> int:
            was, now = before[model], after
            for key in path:
                was, now = was[key], now[key]
            return int(now) - int(was)

        assert grew(stats, "twoio", "inference_stats", "success", "count") == 3
        assert grew(stats, "twoio", "inference_stats", "fail", "count") == 1
        assert grew(stats, "twoio", "execution_count") == 3 and stats["inference_stats"]["compute_infer"]["ns"] > 0
        every = {m["name"]: m for m in client.get_inference_statistics()["model_stats"]}  # GET /v2/models/stats
        assert sorted(every) == sorted(files) and every["twoio"] == model_stats(client, "twoio")  # every loaded one
        # the two classification requests
        assert grew(every["scorer"], "scorer", "inference_stats", "success", "count") == 2

        # the model repository extension: index, unload, load
        index = {m["name"]: m for m in client.get_model_repository_index()}
        assert {n: (m["state"], m["version"]) for n, m in index.items()} == {n: ("READY", "1") for n in files}
        client.unload_model("scorer")
        index = {m["name"]: m for m in client.get_model_repository_index()}
        assert index["scorer"]["state"] == "UNAVAILABLE" and "unloaded" in index["scorer"]["reason"]
        assert index["twoio"]["state"] == "READY"
        assert not client.is_model_ready("scorer") and client.is_model_ready("twoio")
        assert client.is_server_ready()  # an unloaded model is not waited for
        with pytest.raises(InferenceServerException) as gone:
            client.infer("scorer", [ix])
        assert "unloaded" in gone.value.message()
        client.load_model("scorer")  # answered once loaded, as Triton's load is
        assert client.is_model_ready("scorer")
        index = {m["name"]: m for m in client.get_model_repository_index()}
        assert index["scorer"]["state"] == "READY"
        np.testing.assert_array_equal(client.infer("scorer", [ix]).as_numpy("scores"), scores)
        with pytest.raises(InferenceServerException) as unknown_model:
            client.load_model("nosuch")
        assert unknown_model.value.status() == "400" and "nosuch" in unknown_model.value.message()
    finally:
        client.close()


async def test_tritonclient_speaks_to_waft_v2(served: Served) -> None:
    pytest.importorskip("tritonclient.http", reason="tritonclient[http] is a dev dependency (make venv)")
    # a blocking client, and the host runs in this loop: the client gets a thread
    await asyncio.to_thread(exercise_tritonclient, served.address, served.files)


def exercise_tensorflow_models(address: str, files: dict[str, Path]) -> None:
    """A TF1 graph and a TF Lite model of two inputs and two outputs, fed by name with binary and JSON tensors,
    each answer equal to TensorFlow run directly; the names are the models' own, as the metadata lists them."""
    import tritonclient.http as httpclient

    rng = np.random.default_rng(11)
    feeds = {"a": rng.normal(0, 1, (2, 3)).astype(np.float32), "b": rng.integers(-50, 50, (2, 3)).astype(np.int32)}
    client = httpclient.InferenceServerClient(address)
    try:
        for model, direct_run in (("twoio_pb", direct_graph), ("twoio_lite", direct_lite)):
            want = direct_run(files[model], feeds)
            meta = client.get_model_metadata(model)
            assert [(i["datatype"], i["shape"]) for i in meta["inputs"]] == [("FP32", [2, 3]), ("INT32", [2, 3])], meta
            assert sorted(o["name"] for o in meta["outputs"]) == sorted(want), meta
            for binary in (True, False):
                inputs = []
                for spec in meta["inputs"]:
                    tensor = httpclient.InferInput(spec["name"], spec["shape"], spec["datatype"])
                    tensor.set_data_from_numpy(feeds[short_name(spec["name"], feeds)], binary_data=binary)
                    inputs.append(tensor)
                outputs = [httpclient.InferRequestedOutput(o["name"], binary_data=binary) for o in meta["outputs"]]
                result = client.infer(model, inputs, outputs=outputs)
                for name, array in want.items():
                    np.testing.assert_array_equal(result.as_numpy(name), array, err_msg=f"{model} {name}")
    finally:
        client.close()


async def test_tritonclient_feeds_tensorflow_models_by_name(served: Served) -> None:
    pytest.importorskip("tritonclient.http", reason="tritonclient[http] is a dev dependency (make venv)")
    await asyncio.to_thread(exercise_tensorflow_models, served.address, served.files)


def perf_analyzer() -> tuple[Path, dict[str, str]] | str:
    """The binary tritonclient's wheel ships and the environment it runs in, or why it cannot run here."""
    binary = Path(sys.executable).parent / "perf_analyzer"
    if not binary.is_file():
        return f"no {binary}: tritonclient's manylinux wheel (a dev dependency) ships it"
    try:
        import nvidia.cuda_runtime  # libcudart.so.12, which it links although it runs on CPU here
    except ImportError:
        return "nvidia-cuda-runtime-cu12 (a dev dependency) is not installed: perf_analyzer links libcudart.so.12"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(Path(nvidia.cuda_runtime.__path__[0]) / "lib"),
                                                           env.get("LD_LIBRARY_PATH")]))
    if not Path("/usr/lib/x86_64-linux-gnu/libb64.so.0d").exists():
        return "Debian's libb64-0d is not installed (make system-deps): perf_analyzer links libb64.so.0d"
    return binary, env


async def test_perf_analyzer_loads_waft_v2(served: Served, tmp_path: Path) -> None:
    """perf_analyzer reads the metadata and configuration, sends binary inputs to both of twoio's inputs, and
    polls the statistics (it refuses counts that disagree); every request it counted reached the model."""
    found = perf_analyzer()
    if isinstance(found, str):
        pytest.skip(found)
    binary, env = found
    import aiohttp

    async def stats() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://{served.address}/v2/models/twoio/stats") as response:
            assert response.status == 200
            (model,) = (await response.json())["model_stats"]
            return model

    before = await stats()
    report = tmp_path / "perf.csv"
    proc = await asyncio.create_subprocess_exec(
        str(binary), "-m", "twoio", "-u", served.address, "-i", "http", "--concurrency-range", "1",
        "--measurement-mode", "count_windows", "--measurement-request-count", "40", "--max-trials", "4",
        "--stability-percentage", "999", "-f", str(report), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(180):
            output, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text
    after = await stats()
    (row,) = list(csv.DictReader(report.open()))
    assert float(row["Inferences/Second"]) > 0, text
    assert "Server:" in text, text  # it read the server-side statistics
    measured = [int(line.split(":")[1].split()[0]) for line in text.splitlines() if "Request count:" in line]
    assert measured and measured[0] >= 40, text
    # every request it made reached the model and succeeded (its warm-up and trials besides the window)
    success, fail = (after["inference_stats"][k]["count"] - before["inference_stats"][k]["count"]
                     for k in ("success", "fail"))
    assert success >= measured[0] and fail == 0
