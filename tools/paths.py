"""Where the checkout is: the lab tools run only from a checkout, so they may find it from their own file."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Test doubles (the echo provider, the bare NATS responder) that the lattice benchmark borrows.
SUPPORT = ROOT / "tests" / "support"
#: The models `make models` builds; the tools serve these (an installed waft would look in $WAFT_HOME).
MODELS = ROOT / "build" / "models"


def built_actor_issuers() -> str:
    """The issuers of build/actors' signed actors, comma-joined for WAFT_TRUSTED_ISSUERS: the tools run
    `waft up` with a private $WAFT_HOME, whose own account did not sign what `make actors` built."""
    from waft.claims import inspect_actor

    issuers = {inspect_actor(path.read_bytes()).issuer for path in (ROOT / "build" / "actors").glob("*_s.wasm")}
    return ",".join(sorted(issuers))
