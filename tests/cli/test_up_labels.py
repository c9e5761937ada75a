"""`waft up --label`: the host `up` starts carries the operator's labels next to HOST_* ones and wasmCloud's
hostcore.* ones, as `waft host --label` does, so spread requirements can name it."""

from __future__ import annotations

import asyncio

import pytest

from waft.cli.output import CliError
from waft.cli.up_cmd import _labels
from waft.ctl import CtlClient
from waft.up import UpConfig, up

pytestmark = pytest.mark.timeout(120)


async def test_up_labels_its_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST_RACK", "r7")
    ready: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    config = UpConfig(nats_port=0, prefix="uplabels", bindle_address=None, dashboard_address=None,
                      host_overrides=_labels(["zone=a", "gpu=yes"]))
    task = asyncio.create_task(up(config, on_ready=ready.set_result, stop=stop))
    try:
        urls = await asyncio.wait_for(asyncio.shield(ready), 60)
        async with CtlClient.connect(urls["nats"], "uplabels", timeout=5) as ctl:
            [host] = await ctl.get_hosts()
        assert {k: host["labels"][k] for k in ("zone", "gpu", "rack")} == {"zone": "a", "gpu": "yes", "rack": "r7"}
        assert {"hostcore.os", "hostcore.osfamily", "hostcore.arch"} <= set(host["labels"])
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    with pytest.raises(CliError, match="label 'zone' must look like KEY=VALUE"):
        _labels(["zone"])
