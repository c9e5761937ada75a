"""Fixtures of the OCI tests: a real docker-registry on loopback, a fresh $WAFT_HOME per test, and the
artifacts built once (the signed echo actor, and the httpserver provider archive made by `waft par create`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from waft_testing import ROOT, built_actor, docker_registry, run_waft


@dataclass(frozen=True)
class Registry:
    address: str  # 127.0.0.1:PORT
    root: Path

    def ref(self, name: str, tag: str | None = "0.1.0") -> str:
        return f"{self.address}/waft/{name}" + (f":{tag}" if tag else "")

    def blob_file(self, digest: str) -> Path:
        """Where the registry stores a blob on disk (for the tampering tests)."""
        hexdigest = digest.removeprefix("sha256:")
        return self.root / "data" / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("registry")
    try:
        context = docker_registry(root)
        address = context.__enter__()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield Registry(address, root)
    finally:
        context.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def oci_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, artifacts: Artifacts) -> Path:
    """Each test pulls into an empty cache and keeps its keys to itself; it trusts the account that made the
    archive (another user's, as a pulled archive is), with `waft keys trust`'s store."""
    from waft.claims import trust
    from waft.oci import par as parlib

    home = tmp_path / "waft-home"
    home.mkdir()
    monkeypatch.setenv("WAFT_HOME", str(home))
    trust.trust(parlib.load_par(artifacts.httpserver_par.read_bytes()).issuer)
    return home


@dataclass(frozen=True)
class Artifacts:
    echo: Path
    httpserver_par: Path
    home: Path  # the WAFT_HOME whose keys signed the archive


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """The echo actor as built, and the httpserver provider archive made by `waft par create`."""
    work = tmp_path_factory.mktemp("artifacts")
    home = work / "home"
    par = work / "httpserver.par.gz"
    made = run_waft("par", "create", "-c", "wasmcloud:httpserver", "-v", "waft", "-n", "HTTP Server",
                    "--module", "waft_httpserver", "--source", str(ROOT / "providers" / "httpserver"),
                    "--version", "0.1.0", "-r", "1", "--compress", "-d", str(par), home=home)
    assert made.returncode == 0, made.stderr
    return Artifacts(built_actor("echo"), par, home)


@pytest.fixture(scope="session")
def pushed(registry: Registry, artifacts: Artifacts) -> dict[str, str]:
    """echo and httpserver pushed with `waft reg push` (refs by name)."""
    refs = {"echo": registry.ref("echo"), "httpserver": registry.ref("httpserver")}
    for name, path in (("echo", artifacts.echo), ("httpserver", artifacts.httpserver_par)):
        done = run_waft("reg", "push", refs[name], str(path), "--insecure", home=artifacts.home)
        assert done.returncode == 0, done.stderr
    return refs
