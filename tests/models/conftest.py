"""Fixtures for the model recipes: the built models (built once, idempotently) and the recipe modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from waft import models

RECIPES = Path(__file__).resolve().parents[2] / "models"
if str(RECIPES) not in sys.path:
    sys.path.insert(0, str(RECIPES))


@pytest.fixture(scope="session")
def built_models() -> Path:
    """build/models as `make models` leaves it; builds whatever is missing or stale first."""
    import build

    out = models.build_dir()
    assert build.main([]) == 0, "python models/build.py failed (see its stderr above)"
    return out


@pytest.fixture(scope="session")
def index(built_models: Path) -> dict[str, Any]:
    return json.loads((built_models / "index.json").read_text())["models"]
