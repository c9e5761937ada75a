"""`python -m waft_mlinference`: started by a host, which writes HostData to stdin."""

from __future__ import annotations

from waft.provider import run
from waft_mlinference.provider import MlInferenceProvider

run(MlInferenceProvider)
