"""`python -m waft_httpserver`: started by a host, which writes HostData to stdin."""

from __future__ import annotations

from waft.provider import run
from waft_httpserver.provider import HttpServerProvider

run(HttpServerProvider)
