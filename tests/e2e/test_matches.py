"""The whole request path, as a user drives it (design README "The request path"):

    curl -T chelsea.jpg :PORT/effnetlite0/matches
      -> httpserver provider (own process) -> API actor -> pre-processor actor -> mlinference provider
         (own process, model from our bindle server) -> post-processor actor -> JSON top 5

A real host in this event loop, the real NATS server, both providers as processes, the three actors
built from actors/, and the built models pushed to a bindle server. The answers are held to references
computed here: the pre-processor actor run directly, onnxruntime on its tensor, numpy's softmax.
"""

from __future__ import annotations

import io
import json
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import pytest_asyncio
from e2e_support import Lattice, chelsea_jpeg, ml_lattice, skip_if_missing

pytestmark = [pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module")]

ROUTES = ("identity", "effnetlite0")
CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lattice(nats_server: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lattice]:
    """One lattice for the module, serving the built models from our bindle server."""
    skip_if_missing()
    from mlinference_support import ZOO, bindle_server, link_values

    tmp = tmp_path_factory.mktemp("matches")
    async with bindle_server(tmp / "bindle", routes=ROUTES) as bindle:
        values = link_values({route: ZOO[route] for route in ROUTES}, bindle_url=bindle.url)
        async with ml_lattice(nats_server.url, f"tmatches{os.getpid()}", values, ready=ROUTES) as running:
            yield running


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose IHDR declares width x height RGB pixels; one small IDAT."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def reference_tensor(image: bytes, spec: dict[str, Any]) -> np.ndarray:
    """The pre-processor actor itself, run directly in the waPC binding with the model's spec."""
    from actor_support import compiled

    from waft.host.wapc import HostCallError, Limits

    def no_calls(binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
        if namespace == "wasmcloud:builtin:logging":
            return b""
        raise HostCallError(f"unexpected {namespace}")

    inst = compiled("preprocessor").instantiate(no_calls, Limits(memory_bytes=256 << 20))
    reply = msgpack.unpackb(inst.call("MlPreprocessing.Convert",
                                      msgpack.packb({"data": image, "spec": spec}, use_bin_type=True)), raw=False)
    assert reply["result"] == {"success": None}, reply["result"]
    tensor = reply["tensor"]
    return np.frombuffer(tensor["data"], np.float32).reshape(tensor["dimensions"])


def onnx_direct(model: Path, array: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: array})[0]


async def test_curl_matches_and_identity_through_the_whole_path(lattice: Lattice, tmp_path: Path) -> None:
    import aiohttp
    from httpserver_support import curl
    from mlinference_support import ensure_models

    models = ensure_models()
    meta = json.loads((models / "effnetlite0" / "metadata.json").read_text())
    labels = (models / "effnetlite0" / "labels.txt").read_text().splitlines()
    jpg = tmp_path / "chelsea.jpg"
    image = chelsea_jpeg(jpg)
    tensor = reference_tensor(image, meta["input_spec"])
    logits = onnx_direct(next((models / "effnetlite0").glob("*.onnx")), tensor)
    url = lattice.url

    # The headline: curl -T chelsea.jpg .../effnetlite0/matches
    rc, out, err = await curl("-T", str(jpg), f"{url}/effnetlite0/matches", "-w", "\n%{http_code}")
    assert rc == 0, err
    body, _, code = out.rpartition(b"\n")
    assert code == b"200", out
    matches = json.loads(body)
    assert len(matches) == 5 and all(set(m) == {"label", "probability"} for m in matches)
    top = labels.index(matches[0]["label"])
    assert top in CATS, matches
    # ... and the numbers are softmax(onnxruntime(the pre-processor's tensor)), top 5, best first
    v = logits.astype(np.float64).ravel()
    p = np.exp(v - v.max())
    p = (p / p.sum()).astype(np.float32)
    order = np.argsort(-p, kind="stable")[:5]
    assert [m["label"] for m in matches] == [labels[i] for i in order]
    np.testing.assert_allclose([m["probability"] for m in matches], p[order], rtol=1e-4, atol=1e-7)

    # The Predict result on that tensor equals onnxruntime run directly (the /preprocess route
    # answers the InferenceOutput of Predict on the pre-processor's tensor).
    rc, out, err = await curl("-T", str(jpg), f"{url}/effnetlite0/preprocess")
    assert rc == 0, err
    output = json.loads(out)
    assert output["result"] == "Success"
    assert output["tensor"]["dimensions"] == [1, 1000] and output["tensor"]["valueTypes"] == ["ValueF32"]
    predicted = np.frombuffer(bytes(output["tensor"]["data"]), "<f4").reshape(1, 1000)
    assert float(np.max(np.abs(predicted - logits))) <= 1e-5
    assert int(np.argmax(predicted)) == int(np.argmax(logits))

    # k from the query string
    rc, out, _ = await curl("-X", "POST", "--data-binary", f"@{jpg}", f"{url}/effnetlite0/matches?k=2")
    assert [m["label"] for m in json.loads(out)] == [labels[i] for i in order[:2]]

    # The original's JSON tensor on /identity
    data = list(struct.pack("<4f", 1, 2, 3, 4))
    tensor_json = json.dumps({"dimensions": [1, 4], "valueTypes": ["ValueF32"], "flags": 0, "data": data})
    rc, out, err = await curl("-X", "POST", "-H", "Content-Type: application/json", "-d", tensor_json,
                              f"{url}/identity")
    assert rc == 0, err
    assert json.loads(out) == {"result": "Success", "tensor": {"dimensions": [1, 4], "valueTypes": ["ValueF32"],
                                                              "flags": 0, "data": data}}

    # The same through KServe v2, and the errors a user meets
    async with aiohttp.ClientSession() as session:
        infer = {"inputs": [{"name": "0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
        async with session.post(f"{url}/v2/models/identity/infer", json=infer) as response:
            assert response.status == 200
            assert (await response.json())["outputs"][0]["data"] == [1, 2, 3, 4]
        async with session.put(f"{url}/nosuch/matches", data=image) as response:
            assert response.status == 404 and (await response.json())["error"] == "unknown model"
        # A zoo model whose file was never added (not in the link): 404 that says how to add it (issue 6)
        async with session.put(f"{url}/mobilenetv27/matches", data=image) as response:
            answer = await response.json()
            assert response.status == 404 and answer["error"] == "unknown model", answer
            assert "model mobilenetv27 is not installed" in answer["detail"], answer
            assert "`waft models add mobilenetv27 FILE`" in answer["detail"], answer
            assert "`waft models fetch mobilenetv27`" in answer["detail"], answer
        async with session.put(f"{url}/effnetlite0/matches", data=b"not an image") as response:
            assert response.status == 400 and (await response.json())["error"] == "undecodable image"
        # Decompression bomb: ~100 bytes of PNG declaring 100 000 x 100 000 pixels, refused from its
        # header with 400 (bad input, not a big body), not decoded
        async with session.put(f"{url}/effnetlite0/matches", data=bomb_png()) as response:
            answer = await response.json()
            assert response.status == 400 and answer["error"] == "image too large", answer
            assert "100000 x 100000 pixels exceeds the limit" in answer["detail"], answer
        async with session.put(f"{url}/identity", data=b'{"dimensions": [1, 4], "data": [1]}') as response:
            assert response.status == 400 and "need 16 bytes" in (await response.json())["detail"]
        async with session.get(f"{url}/no/such/route") as response:
            assert response.status == 404 and (await response.json())["error"] == "not found"
        async with session.get(f"{url}/models") as response:
            listed = {m["name"]: m["status"] for m in (await response.json())["models"]}
            assert listed == {"identity": "ready", "effnetlite0": "ready"}


def encode(image: Any, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


#: The effnetlite0 benchmark photos (scikit-image's bundled ones, as tools/bench/peer_setup.py makes them).
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
#: Formats that keep the JPEG's decoded pixels exactly; GIF (256-colour palette) and lossy WebP make a
#: different image, whose answer is the one its own pixels give in Pillow.
LOSSLESS = ("bmp", "webp-lossless", "png")


async def test_effnetlite0_photos_as_bmp_gif_and_webp_answer_the_jpegs_top1(lattice: Lattice) -> None:
    """The user's JPEG, and what it shows saved as BMP, PNG, GIF, lossless and lossy WebP, each sent over
    HTTP. Every answer is onnxruntime's on Pillow's decode of that same file (waft.models.decode and
    preprocess: the JPEG drafted, any other format box-reduced by the same scale); the lossless ones are the
    JPEG's top-1, and so are GIF and lossy WebP wherever their own pixels keep it. Astronaut's 512 x 512
    is where the one scaling rule matters: at full size its BMP would answer another class than its JPEG,
    which is decoded at 1/2 scale in the IDCT."""
    import aiohttp
    import onnxruntime as ort
    from mlinference_support import ensure_models
    from PIL import Image
    from skimage import data

    from waft.models import decode, preprocess

    model_dir = ensure_models() / "effnetlite0"
    spec = json.loads((model_dir / "metadata.json").read_text())["input_spec"]
    labels = (model_dir / "labels.txt").read_text().splitlines()
    session = ort.InferenceSession(str(model_dir / "efficientnet-lite0.onnx"), providers=["CPUExecutionProvider"])

    def pillow_top1(file: bytes) -> str:
        tensor = preprocess(decode(Image.open(io.BytesIO(file)), spec), spec)
        return labels[int(np.argmax(session.run(None, {session.get_inputs()[0].name: tensor})[0]))]

    answers: dict[str, dict[str, str]] = {}
    async with aiohttp.ClientSession() as http:
        for name in PHOTOS:
            jpeg = encode(Image.fromarray(getattr(data, name)()).convert("RGB"), "JPEG", quality=90)
            shown = Image.open(io.BytesIO(jpeg)).convert("RGB")
            files = {"jpeg": jpeg, "bmp": encode(shown, "BMP"), "png": encode(shown, "PNG"),
                     "gif": encode(shown, "GIF"), "webp-lossless": encode(shown, "WEBP", lossless=True),
                     "webp-lossy": encode(shown, "WEBP", quality=90)}
            assert files["gif"][:6] in (b"GIF87a", b"GIF89a")
            answers[name] = {}
            for fmt, body in files.items():
                async with http.put(f"{lattice.url}/effnetlite0/matches?k=1", data=body) as response:
                    text = await response.read()
                    assert response.status == 200, (name, fmt, text)
                    answers[name][fmt] = json.loads(text)[0]["label"]
                assert answers[name][fmt] == pillow_top1(body), (name, fmt, answers[name])
    for name, top1 in answers.items():
        assert {top1[fmt] for fmt in LOSSLESS} == {top1["jpeg"]}, (name, top1)
        assert top1["gif"] == top1["jpeg"], (name, top1)
    # lossy WebP keeps the JPEG's answer for the photos whose top two classes are not a hair apart
    assert [n for n, top1 in answers.items() if top1["webp-lossy"] != top1["jpeg"]] in ([], ["astronaut"]), answers


async def test_an_animated_webp_answers_as_its_first_frame(lattice: Lattice) -> None:
    """An animated WebP (the cat, then the coffee) classifies as the cat alone does: the pre-processor
    decodes the first frame, as Pillow's Image.open shows an animation; the answers are equal, not close."""
    import aiohttp
    from PIL import Image
    from skimage import data

    cat, coffee = Image.fromarray(data.chelsea()), Image.fromarray(data.coffee()).resize((451, 300))
    animated = encode(cat, "WEBP", save_all=True, append_images=[coffee], duration=100, lossless=True)
    assert Image.open(io.BytesIO(animated)).n_frames == 2
    answers = []
    async with aiohttp.ClientSession() as http:
        for body in (animated, encode(cat, "WEBP", lossless=True), encode(coffee, "WEBP", lossless=True)):
            async with http.put(f"{lattice.url}/effnetlite0/matches", data=body) as response:
                assert response.status == 200, await response.read()
                answers.append(await response.json())
    assert answers[0] == answers[1] != answers[2], answers
