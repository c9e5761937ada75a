"""Pre-processor: MlPreprocessing.Convert in wasm vs Pillow + numpy, on 0.3, 2 and 12 MP JPEGs (issue 6).

Ours: the built pre-processor actor in Waft's waPC binding (wasmtime), one instance, timing msgpack
request + Convert + msgpack answer, with effnetlite0's input spec. Baseline: Pillow (libjpeg-turbo) +
numpy doing the same work: open, `draft` at the DCT scale the actor picks (preprocessor.c's draft_denom, so
both decode the same number of pixels), shorter side to 256 with BILINEAR, centre crop 224, (x - mean) / std,
NCHW float32 (`waft.models.preprocess`). The photos are scikit-image's chelsea upscaled with Pillow (BICUBIC)
and encoded at quality 90, 4:2:0. Blocks of ours and Pillow alternate (common.latency_pair). Goal: <= 1.5x.
"""

from __future__ import annotations

import io
import statistics
import subprocess
import sys
from typing import Any

from tools.bench.common import latency_pair, row
from tools.paths import ROOT
from waft.models import draft_scale

ACTOR = ROOT / "build" / "actors" / "preprocessor.wasm"
SPEC: dict[str, Any] = {"size": [224, 224], "layout": "NCHW", "resize": "shorter_side", "resize_to": 256,
                        "crop": "center", "mean": [127, 127, 127], "std": [128, 128, 128], "dtype": "f32",
                        "color": "RGB", "resample": "bilinear"}
#: label -> (width, height, calls per block); 451x300 chelsea keeps its 3:2 aspect.
SIZES = {"0.3 MP": (672, 448, 20), "2 MP": (1734, 1156, 8), "12 MP": (4242, 2828, 3)}
GOAL = "<= 1.2x Pillow, bit-exact"


def photo_jpeg(width: int, height: int) -> bytes:
    from PIL import Image
    from skimage import data

    image = Image.fromarray(data.chelsea()).resize((width, height), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90, subsampling=2)
    return buf.getvalue()


def pillow_convert(data: bytes, spec: dict[str, Any]) -> Any:
    """Pillow's side of the row: the same decode and scaling rule as the pre-processor (waft.models)."""
    from PIL import Image

    from waft.models import decode, preprocess

    return preprocess(decode(Image.open(io.BytesIO(data)), spec), spec)


def _instance() -> Any:
    from waft.host.wapc import HostCallError, Limits, Runtime

    if not ACTOR.exists():
        subprocess.run([sys.executable, str(ROOT / "actors" / "build.py"), "preprocessor"], check=True)

    def host_call(binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
        if namespace == "wasmcloud:builtin:logging":
            return b""
        raise HostCallError(f"unexpected host call {namespace} {operation}")

    module = Runtime().compile(ACTOR.read_bytes())
    return module.instantiate(host_call, Limits())


async def run() -> list[dict[str, object]]:
    import msgpack
    import numpy as np

    inst = _instance()
    rows: list[dict[str, object]] = []
    for label, (width, height, per_round) in SIZES.items():
        data = photo_jpeg(width, height)

        def ours(data: bytes = data) -> Any:
            reply = msgpack.unpackb(inst.call("MlPreprocessing.Convert",
                                              msgpack.packb({"data": data, "spec": SPEC}, use_bin_type=True)),
                                    raw=False)
            if reply["result"] != {"success": None}:
                raise RuntimeError(f"Convert failed: {reply['result']}")
            t = reply["tensor"]
            return np.frombuffer(t["data"], np.float32).reshape(t["dimensions"])

        def baseline(data: bytes = data) -> Any:
            return pillow_convert(data, SPEC)

        diff = float(np.abs(ours() - baseline()).mean())  # same work: the tensors agree

        async def ours_call() -> object:
            return ours()

        async def baseline_call() -> object:
            return baseline()

        pair = await latency_pair(ours_call, baseline_call, rounds=5, per_round=per_round, warmup=2)
        scale = draft_scale(width, height, SPEC)
        name = (f"preprocess {label} JPEG {width}x{height} ({len(data) // 1024} KiB, DCT 1/{scale}) Convert, "
                f"median (tensor mean diff {diff:.1e})")
        rows.append(row(name, statistics.median(pair.ours) * 1e3, statistics.median(pair.baseline) * 1e3, "ms",
                        goal=GOAL))
    return rows


if __name__ == "__main__":
    import asyncio

    for r in asyncio.run(run()):
        print(f"{r['name']}: ours {r['ours']:.2f} {r['unit']}, Pillow {r['baseline']:.2f} {r['unit']}, "
              f"ratio {r['ratio']:.2f} (goal {r['goal']})")
