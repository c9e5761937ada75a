"""What a host is told at start: one dataclass, filled from flags, then `WAFT_*`/`WASMCLOUD_*`, then defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from waft.claims.keys import Role
from waft.claims.trust import TRUST_KEYS, TrustPolicy
from waft.config import int_setting, setting
from waft.host.wapc import Limits
from waft.lattice import subjects


def _list(raw: str | None) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()] if raw else []


@dataclass
class HostConfig:
    nats_url: str = "nats://127.0.0.1:4222"
    prefix: str = subjects.DEFAULT_PREFIX
    host_seed: str | None = None
    cluster_seed: str | None = None
    cluster_issuers: list[str] = field(default_factory=list)
    allowed_issuers: list[str] = field(default_factory=list)
    #: Whose actors and provider archives run (`waft.claims.trust`): "keys" (the local account keys,
    #: `waft keys trust`, `trusted_issuers`) or "any"; a non-empty `allowed_issuers` replaces both.
    #: None: the `trust` / `trusted_issuers` settings, read when the policy is built.
    trust: str | None = None
    trusted_issuers: list[str] | None = None
    rpc_timeout_s: float = 2.0
    limits: Limits = field(default_factory=Limits)
    labels: dict[str, str] = field(default_factory=dict)
    heartbeat_interval_s: float = 30.0
    #: Heartbeats a host may miss before other hosts release its presence in the lattice cache (and, if it
    #: was the last to run something, its claims): a SIGKILLed host never removes them itself.
    stale_heartbeats: int = 3
    health_interval_s: float = 10.0
    friendly_name: str = ""
    allow_latest: bool = False
    allowed_insecure: list[str] = field(default_factory=list)
    #: Variables each provider process gets on top of the host's environment (`waft up` names the
    #: model repository here instead of changing its own environment).
    provider_env: dict[str, str] = field(default_factory=dict)
    #: The host's own nkey seed for NATS (None: none, or credentials in `nats_url`), and the seed its
    #: providers get in HostData; `with_stored_nats_credentials` fills both from the key store.
    nats_seed: str | None = None
    provider_nats_seed: str | None = None
    #: Modules a `python:<module>` provider ref may name (None: the `python_providers` setting, else
    #: `provider_refs.DEFAULT_PYTHON_PROVIDERS`): a ctl user must not run any importable module.
    python_providers: list[str] | None = None
    #: Stand as a candidate for the lattice's reconciler (`waft.reconciler`), which keeps deployed apps as
    #: declared; `WAFT_RECONCILER=0` keeps this host out of it.
    reconciler: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> HostConfig:
        """Flags (the non-None `overrides`) win over `WAFT_*`/`WASMCLOUD_*` variables, which win over defaults.

        wasmCloud's own variable names are read too, so a host started from a wasmCloud environment
        joins the same lattice with the same keys.
        """
        env = os.environ if env is None else env
        config = cls()
        config.prefix = setting("lattice_prefix", config.prefix, wasmcloud="lattice_prefix", env=env) or config.prefix
        config.host_seed = setting("host_seed", wasmcloud="host_seed", env=env)
        config.cluster_seed = setting("cluster_seed", wasmcloud="cluster_seed", env=env)
        config.cluster_issuers = _list(setting("cluster_issuers", wasmcloud="cluster_issuers", env=env))
        config.allowed_issuers = _list(setting("allowed_issuers", env=env))
        config.trust = (setting("trust", TRUST_KEYS, env=env) or TRUST_KEYS).strip().lower()
        config.trusted_issuers = _list(setting("trusted_issuers", env=env))
        timeout_ms = int_setting("rpc_timeout_ms", 0, wasmcloud="rpc_timeout_ms", env=env)
        if timeout_ms:
            config.rpc_timeout_s = timeout_ms / 1000
        config.allow_latest = (setting("oci_allow_latest", "", wasmcloud="oci_allow_latest", env=env)
                               or "").lower() in ("1", "true")
        config.allowed_insecure = _list(setting("oci_allowed_insecure", wasmcloud="oci_allowed_insecure", env=env))
        config.limits = Limits.from_settings(env)
        heartbeat_ms = int_setting("heartbeat_interval_ms", 0, env=env)
        if heartbeat_ms > 0:
            config.heartbeat_interval_s = heartbeat_ms / 1000
        config.stale_heartbeats = max(1, int_setting("stale_heartbeats", config.stale_heartbeats, env=env))
        if (python := setting("python_providers", env=env)) is not None:
            config.python_providers = _list(python)
        config.reconciler = (setting("reconciler", "1", env=env) or "1").lower() not in ("0", "false", "off", "no")
        # wasmCloud's convention: HOST_<NAME>=value labels the host <name>=value.
        config.labels = {k[5:].lower(): v for k, v in env.items() if k.startswith("HOST_") and len(k) > 5}
        for key, value in overrides.items():
            if value is not None:
                setattr(config, key, value)
        return config

    def trust_policy(self) -> TrustPolicy:
        defaults = TrustPolicy.from_settings() if self.trust is None or self.trusted_issuers is None else None
        mode = self.trust if self.trust is not None else defaults.mode  # type: ignore[union-attr]
        extra = tuple(self.trusted_issuers) if self.trusted_issuers is not None else defaults.extra  # type: ignore[union-attr]
        return TrustPolicy(mode, extra, tuple(self.allowed_issuers))

    def with_stored_cluster_key(self) -> HostConfig:
        """Hosts started from the CLI share the cluster key kept in the key store, so `waft ctl call`
        and every host on this machine trust each other without passing seeds around."""
        if not self.cluster_seed:
            from waft.claims import keystore

            self.cluster_seed = keystore.load_or_create("cluster", Role.CLUSTER).seed
        return self

    def with_stored_nats_credentials(self) -> HostConfig:
        """Hosts started from the CLI on a lattice `waft up` secured use the credentials it stored: the host
        user for itself, the provider user (which cannot publish control commands) for its providers.

        A URL with its own `user:password@` keeps meaning what it says; on a server without
        authorization the seeds are simply not asked for."""
        from waft.lattice import credentials

        if not credentials.has_userinfo(self.nats_url):
            self.nats_seed = self.nats_seed or credentials.stored_host_seed()
            self.provider_nats_seed = self.provider_nats_seed or credentials.stored_provider_seed()
        return self
