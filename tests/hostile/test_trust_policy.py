"""Trust policy: a correctly signed actor or provider archive from an issuer nobody trusted is refused.

Before the policy a swapped module re-signed with any fresh account key ran; these tests sign with such
keys and check they are refused by default, accepted once `waft keys trust` (the real CLI) names them,
refused again after `untrust`, and accepted by everyone only with the explicit `WAFT_TRUST=any`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from waft_testing import ROOT, built_actor, run_waft, running_host

from waft.claims import KeyPair, Role, keystore, sign_actor
from waft.claims.trust import TrustPolicy, UntrustedIssuer
from waft.errors import SettingError
from waft.host.config import HostConfig
from waft.host.host import StartError
from waft.oci import par as parlib


def _echo_signed_by(issuer: KeyPair, path: Path) -> str:
    module = built_actor("echo", signed=False).read_bytes()
    path.write_bytes(sign_actor(module, issuer=issuer, subject=KeyPair.generate(Role.MODULE), name="swapped",
                                caps=["wasmcloud:httpserver"]))
    return str(path)


async def test_an_untrusted_actor_is_refused_until_trusted_and_again_after_untrust(
        nats_url: str, lattice_prefix: str, tmp_path: Path, hostile_home: Path) -> None:
    stranger = KeyPair.generate(Role.ACCOUNT)
    ref = _echo_signed_by(stranger, tmp_path / "swapped_s.wasm")
    async with running_host(nats_url=nats_url, prefix=lattice_prefix,
                            cluster_seed=KeyPair.generate(Role.CLUSTER).seed) as host:
        with pytest.raises(StartError, match=f"issuer {stranger.public_key} is not trusted; `waft keys trust"):
            await host.start_actor(ref)
        assert not host.actors

        trusted = run_waft("keys", "trust", stranger.public_key, home=hostile_home)
        assert trusted.returncode == 0, trusted.stderr
        listed = run_waft("-o", "json", "keys", "trusted", home=hostile_home)
        assert {"public_key": stranger.public_key, "source": "waft keys trust"} in json.loads(listed.stdout)
        pool = await host.start_actor(ref)  # read at each start: no host restart needed
        assert pool.count == 1
        await host.stop_actor(pool.public_key)

        untrusted = run_waft("keys", "untrust", stranger.public_key, home=hostile_home)
        assert untrusted.returncode == 0, untrusted.stderr
        with pytest.raises(StartError, match="not trusted"):
            await host.start_actor(ref)


def test_the_local_account_key_is_trusted_and_other_roles_cannot_be(hostile_home: Path) -> None:
    policy = TrustPolicy()
    own = keystore.load_or_create("account", Role.ACCOUNT)
    policy.check(own.public_key, "actor")  # what this machine signs with, it runs
    with pytest.raises(UntrustedIssuer, match="not trusted"):
        policy.check(KeyPair.generate(Role.ACCOUNT).public_key, "actor")
    refused = run_waft("keys", "trust", KeyPair.generate(Role.MODULE).public_key, home=hostile_home)
    assert refused.returncode == 1 and "issuers are account keys" in refused.stderr + refused.stdout
    assert not (hostile_home / "trusted").exists() or not any((hostile_home / "trusted").iterdir())


def test_settings_add_issuers_and_trust_any_opts_out() -> None:
    stranger = KeyPair.generate(Role.ACCOUNT).public_key
    HostConfig.from_env({"WAFT_TRUSTED_ISSUERS": f"{stranger}, "}).trust_policy().check(stranger, "actor")
    HostConfig.from_env({"WAFT_TRUST": "any"}).trust_policy().check(stranger, "actor")
    with pytest.raises(UntrustedIssuer):
        HostConfig.from_env({}).trust_policy().check(stranger, "actor")
    # an explicit allow-list is exact, even against the opt-out
    other = KeyPair.generate(Role.ACCOUNT).public_key
    with pytest.raises(UntrustedIssuer, match="allow-list"):
        HostConfig.from_env({"WAFT_TRUST": "any", "WAFT_ALLOWED_ISSUERS": other}).trust_policy().check(
            stranger, "actor")
    with pytest.raises(SettingError, match="WAFT_TRUST must be one of"):
        HostConfig.from_env({"WAFT_TRUST": "everyone"}).trust_policy()


def test_an_untrusted_provider_archive_is_refused_before_anything_is_extracted(
        tmp_path: Path, hostile_home: Path) -> None:
    from waft.host.providers import ProviderStartError

    stranger = KeyPair.generate(Role.ACCOUNT)
    path = tmp_path / "stranger.par"
    path.write_bytes(parlib.create_par("waft_testprovider", capid="waft:test", vendor="waft", name="Test provider",
                                       issuer=stranger, subject=KeyPair.generate(Role.SERVICE),
                                       source=ROOT / "tests" / "support"))
    with pytest.raises(ProviderStartError, match=f"provider archive Test provider issuer {stranger.public_key} is "
                                                 "not trusted"):
        parlib.resolve_par_provider_sync(str(path))
    root = parlib.par_cache_root()
    assert not root.exists() or not any(root.rglob("*"))
    spec = parlib.resolve_par_provider_sync(str(path), trust=TrustPolicy(extra=(stranger.public_key,)))
    assert spec.claims["iss"] == stranger.public_key
