"""Where the checkout is: the lab tools run only from a checkout, so they may find it from their own file."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Test doubles (the echo provider, the bare NATS responder) that the lattice benchmark borrows.
SUPPORT = ROOT / "tests" / "support"
#: The models `make models` builds; the tools serve these (an installed waft would look in $WAFT_HOME).
MODELS = ROOT / "build" / "models"
