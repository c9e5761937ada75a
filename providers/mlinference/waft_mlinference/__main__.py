"""`python -m waft_mlinference`: started by a host, which writes HostData to stdin."""

from __future__ import annotations

import logging
import os

from waft.logs import configure_logging
from waft.provider import run
from waft_mlinference.provider import MlInferenceProvider

if os.environ.get("WAFT_LOG_FORMAT", "").lower() == "json":
    # The SDK's set-up is text; with a handler in place already, its basicConfig leaves ours alone.
    configure_logging("json", logging.getLevelName(os.environ.get("WAFT_LOG_LEVEL", "INFO").upper()))

run(MlInferenceProvider)
