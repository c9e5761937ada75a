"""Fixtures shared by the whole suite: a real nats-server, isolated $WAFT_HOME, running hosts."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from waft.embedded_nats import EmbeddedNats

ROOT = Path(__file__).resolve().parent.parent
SUPPORT = Path(__file__).resolve().parent / "support"
if str(SUPPORT) not in sys.path:  # test modules import their helpers from here (waft_testing)
    sys.path.insert(0, str(SUPPORT))

from waft_testing import built_actor, built_issuers, running_host  # noqa: E402  (re-exported for older imports)

__all__ = ["built_actor", "running_host"]

#: The shipped Python providers plus the suite's doubles (tests/support), allowed in every host it starts.
TEST_PYTHON_PROVIDERS = ("waft_httpserver", "waft_mlinference", "waft_testprovider", "echo_provider")


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keys and caches of the suite never touch the developer's ~/.waft (built actors keep theirs); the models
    `make models` built in this checkout are the ones every test (and every `waft` it starts) serves. The test
    doubles (tests/support) join the allowed `python:<module>` providers here, never by default.

    The actors in build/actors were signed by the key store that built them (the developer's, or a clean
    clone's `make actors`), not this throwaway one: their issuers, and this home's own account (which signs
    what is built during the run), are trusted through WAFT_TRUSTED_ISSUERS, so every host the suite starts,
    whatever its `$WAFT_HOME`, runs under the default trust policy."""
    home = tmp_path_factory.mktemp("waft-home")
    old = {k: os.environ.get(k) for k in ("WAFT_HOME", "PYTHONPATH", "WAFT_MODELS_DIR", "WAFT_PYTHON_PROVIDERS",
                                          "WAFT_TRUSTED_ISSUERS")}
    os.environ["WAFT_HOME"] = str(home)
    os.environ["WAFT_MODELS_DIR"] = old["WAFT_MODELS_DIR"] or str(ROOT / "build" / "models")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SUPPORT), old["PYTHONPATH"]]))
    os.environ["WAFT_PYTHON_PROVIDERS"] = ",".join(TEST_PYTHON_PROVIDERS)
    from waft.claims import Role, keystore

    own = keystore.load_or_create("account", Role.ACCOUNT).public_key
    os.environ["WAFT_TRUSTED_ISSUERS"] = ",".join(sorted({*built_issuers(), own}))
    yield
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _trust_the_built_actors() -> None:
    """build/actors is shared by everyone working in the checkout: a rebuild during the run re-signs it with
    the builder's account, so the issuers are read again before each test (a few small files)."""
    current = set(filter(None, os.environ.get("WAFT_TRUSTED_ISSUERS", "").split(",")))
    if not current.issuperset(built := built_issuers()):
        os.environ["WAFT_TRUSTED_ISSUERS"] = ",".join(sorted(current | set(built)))


@pytest.fixture(scope="session")
def nats_server() -> Iterator[EmbeddedNats]:
    with EmbeddedNats() as server:
        yield server


@pytest.fixture()
def nats_url(nats_server: EmbeddedNats) -> str:
    return nats_server.url


@pytest.fixture()
def lattice_prefix(request: pytest.FixtureRequest) -> str:
    """A lattice of its own per test, so tests sharing one server never see each other."""
    name = "".join(c for c in request.node.name if c.isalnum())[:40]
    return f"t{name}{os.getpid()}"


