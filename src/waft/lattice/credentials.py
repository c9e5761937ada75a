"""NATS credentials of a lattice started by `waft up`: two nkey users, each with its own permissions.

Why: an open NATS server is full control of the lattice. Anyone who can publish `wasmbus.ctl.*.cmd.*`
can start a provider from an archive (code execution as the user running the host), put links
straight onto a provider's subject, stop hosts or rewrite the JetStream lattice cache. So `waft up`
makes two nkey users (NATS' own challenge/response: the seed never goes over the wire, and no password
sits in a URL or the process list) and hands the server an `authorization` block with them:

- `host`: the operator's credential, with every permission. The host, `waft ctl`, `waft app`, the
  dashboard and `waft host` on this machine load it from the key store without a flag.
- `provider`: what every provider process gets (in HostData's `lattice_rpc_user_seed`). It may answer
  requests, invoke actors (the 4-token `wasmbus.rpc.{prefix}.{actor}` subjects only), publish access
  records and carry chunked payloads through the lattice's object store; it may not publish control
  commands, link puts to other providers, events, the lattice cache (`lc.>`, `$JS.API` on its stream)
  or the deployed-apps bucket.

Both seeds live in the key store (`$WAFT_HOME/keys/nats_host.nk`, `nats_provider.nk`), created 0600 by
`open(2)` itself. A URL that carries its own `user:password@` wins over the stored key, so an external
NATS server with its own users keeps working.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from waft.claims import keystore
from waft.claims.keys import KeyPair, Role
from waft.config import setting
from waft.lattice import subjects

HOST_KEY = "nats_host"
PROVIDER_KEY = "nats_provider"
#: The object store stream nats-py makes for a bucket (`OBJ_{bucket}`), and its subjects (`$O.{bucket}.>`).
OBJECT_STREAM = "OBJ_{bucket}"


def insecure_no_auth(flag: bool | None = None) -> bool:
    """`waft up --insecure-no-auth` or `WAFT_INSECURE_NO_AUTH=1`: today's open NATS, dashboard and bindle."""
    if flag:
        return True
    return (setting("insecure_no_auth", "") or "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class LatticeCredentials:
    host: KeyPair
    provider: KeyPair


def ensure_credentials() -> LatticeCredentials:
    """The lattice's two users, generated on first use and kept in the key store."""
    return LatticeCredentials(keystore.load_or_create(HOST_KEY, Role.USER),
                              keystore.load_or_create(PROVIDER_KEY, Role.USER))


def _stored_seed(name: str) -> str | None:
    try:
        pair = keystore.load(name)
    except (OSError, ValueError):
        return None
    return pair.seed if pair is not None and pair.role is Role.USER else None


def stored_host_seed() -> str | None:
    """The operator's seed when `waft up` made one on this machine (None: connect without one)."""
    return _stored_seed(HOST_KEY)


def stored_provider_seed() -> str | None:
    return _stored_seed(PROVIDER_KEY)


#: Client-side pings for long-lived connections (hosts, providers): nats-py's default notices a frozen
#: server after 2 minutes of silence; a cluster member stopped (SIGSTOP, a hung machine) must be left for
#: another member within seconds, as the server already drops a frozen client after two missed pings.
FAILOVER_PINGS: dict[str, Any] = {"ping_interval": 1, "max_outstanding_pings": 2}


def server_urls(url: str) -> list[str]:
    """`nats://a:4222,nats://b:4222` -> both: a client given several members of a cluster tries each, so it
    joins whichever is up (and fails over to the others), as `nats` CLI's comma-separated `--server`."""
    return [part.strip() for part in url.split(",") if part.strip()] or [url]


def has_userinfo(url: str) -> bool:
    first = server_urls(url)[0]
    return urlsplit(first if "://" in first else f"nats://{first}").username is not None


def connect_options(url: str, seed: str | None) -> dict[str, Any]:
    """Keyword arguments for `nats.connect` that authenticate with `seed`, unless the URL names its own user.

    A server without authorization sends no nonce, and nats-py then sends no signature: the same
    options work against an open server, so a client never has to know which kind it is talking to.
    """
    if not seed or has_userinfo(url):
        return {}
    return {"nkeys_seed_str": seed}


def host_connect_options(url: str) -> dict[str, Any]:
    """What the CLI, the dashboard and `waft host` pass to `nats.connect`: the stored operator key."""
    return connect_options(url, stored_host_seed())


def host_permissions() -> dict[str, Any]:
    return {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}


def provider_permissions(prefixes: list[str]) -> dict[str, Any]:
    """What a provider may do on the lattices named by `prefixes` (object store access is per bucket)."""
    publish = [
        "wasmbus.rpc.*.*",  # invoke an actor: actor subjects have 4 tokens, providers' subjects 5 or more
        "_INBOX.>",  # answer requests; JetStream API answers come back here too
        "waft.access.*",  # the httpserver's access records, for the dashboard
        "$JS.API.INFO", "$JS.API.STREAM.NAMES",  # read only: which stream holds a subject
        "$JS.FC.>",  # flow control of the ordered consumer that reads a chunked payload
    ]
    for prefix in prefixes:
        bucket = subjects.object_store_bucket(prefix)
        stream = OBJECT_STREAM.format(bucket=bucket)
        # STREAM.INFO/CREATE/UPDATE/PURGE, STREAM.MSG.GET, DIRECT.GET, CONSUMER.CREATE/DELETE: this bucket only
        publish += [f"$JS.API.*.*.{stream}", f"$JS.API.*.*.*.{stream}", f"$JS.API.*.*.{stream}.>",
                    f"$JS.ACK.{stream}.>", f"$O.{bucket}.>"]
    subscribe = [
        "wasmbus.rpc.*.*.>",  # its own rpc, link, health and shutdown subjects (never an actor's)
        "_INBOX.>",
    ]
    return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}, "allow_responses": True}


def route_credentials(credentials: LatticeCredentials) -> tuple[str, str]:
    """The user/password every route of a `waft up` cluster presents and requires, derived from the host
    seed: members that share the lattice's keys (which they must, for clients to pass on any of them)
    agree on it without another secret to copy, and nobody without the seed can join a route."""
    import hashlib
    import hmac

    digest = hmac.new(credentials.host.seed.encode(), b"waft nats route", hashlib.sha256).hexdigest()
    return "waft-route", digest


def authorization_config(credentials: LatticeCredentials, prefixes: list[str]) -> str:
    """The nats-server `authorization` block (its config format reads JSON values as they are)."""
    users = [{"nkey": credentials.host.public_key, "permissions": host_permissions()},
             {"nkey": credentials.provider.public_key, "permissions": provider_permissions(prefixes)}]
    return f"authorization {{ users: {json.dumps(users)} }}\n"
