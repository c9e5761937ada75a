"""`waft up` (foreground, or `--detached`) and `waft down`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path

from waft.cli.output import CliError, add_prefix_flag, console, parse_pairs
from waft.config import setting, without_credentials


def register(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser("up", help="start a lattice: NATS, bindle, host, dashboard")
    up.add_argument("--nats-url", help="join this NATS server instead of starting one")
    up.add_argument("--join", action="store_true", help="join the NATS server on 127.0.0.1:4222 (a second host)")
    up.add_argument("--nats-port", type=int, default=4222)
    up.add_argument("--nats-host", default="127.0.0.1",
                    help="where the embedded NATS server listens for clients (0.0.0.0: every interface)")
    cluster = up.add_argument_group("NATS cluster (docs/scale-out.md)")
    cluster.add_argument("--cluster-listen", metavar="HOST:PORT",
                         help="make the embedded NATS server a cluster member, taking routes here")
    cluster.add_argument("--route", action="append", default=[], metavar="nats-route://HOST:PORT",
                         help="another member's cluster address (repeatable, or comma-separated)")
    cluster.add_argument("--cluster-name", default="waft", help="the same on every member")
    cluster.add_argument("--server-name", help="this member's name (default: machine name and cluster port)")
    cluster.add_argument("--leaf-remote", metavar="nats-leaf://HOST:7422",
                         help="run the embedded NATS server as a leaf node of this remote cluster")
    cluster.add_argument("--leaf-credentials", type=Path, metavar="FILE",
                         help="for the leaf connection: a NATS credentials file (user JWT and seed) or an nkey "
                              "seed file such as the hub's $WAFT_HOME/keys/nats_host.nk")
    cluster.add_argument("--leaf-listen", metavar="HOST:PORT",
                         help="accept leaf nodes here (they must sign with this lattice's host key)")
    add_prefix_flag(up)
    up.add_argument("--bindle-address", default="127.0.0.1:8080")
    up.add_argument("--no-bindle", action="store_true")
    up.add_argument("--dashboard-address", default=setting("dashboard_address", "127.0.0.1:4000"))
    up.add_argument("--no-dashboard", action="store_true")
    up.add_argument("--app", type=Path, help="deploy this manifest once the host is up")
    up.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                    help="label this host for spread requirements (repeatable; HOST_<KEY> variables too)")
    up.add_argument("--push-models", action="store_true", help="push the preloaded models (build/models) first")
    up.add_argument("-d", "--detached", action="store_true", help="run in the background; stop with `waft down`")
    up.add_argument("--log-format", choices=("text", "json"), default="text")
    up.add_argument("--insecure-no-auth", action="store_true",
                    help="start NATS without credentials and let anyone write to bindle and the dashboard "
                         "(any local process can then run code as you); also WAFT_INSECURE_NO_AUTH=1")
    up.set_defaults(handler=_up)

    down = subparsers.add_parser("down", help="stop a lattice started with `waft up --detached`")
    down.set_defaults(handler=_down)


def _up(args: argparse.Namespace) -> int:
    from waft.logs import configure_logging
    from waft.up import UpConfig, UpError, detach, pid_file, up

    if args.detached:
        # the words after the `up` command (global flags such as --verbose may come before it)
        words = sys.argv[1:]
        words = words[words.index("up") + 1:] if "up" in words else words
        argv = [a for a in words if a not in ("-d", "--detached")]
        log_path = pid_file().with_name("up.log")
        offset = log_path.stat().st_size if log_path.exists() else 0
        pid = detach(argv)
        console.print(f"lattice starting in the background (pid {pid}); `waft down` stops it")
        _wait_detached(pid, log_path, offset)
        return 0
    configure_logging(args.log_format, logging.DEBUG if args.verbose else logging.INFO)
    nats_url = args.nats_url or (f"nats://127.0.0.1:{args.nats_port}" if args.join else None)
    config = UpConfig(nats_url=nats_url, nats_port=args.nats_port, prefix=args.lattice_prefix,
                      bindle_address=None if args.no_bindle or args.join else args.bindle_address,
                      dashboard_address=None if args.no_dashboard or args.join else args.dashboard_address,
                      app=args.app, push_models=args.push_models, insecure_no_auth=args.insecure_no_auth,
                      nats_host=args.nats_host, cluster_listen=args.cluster_listen, cluster_name=args.cluster_name,
                      routes=tuple(r.strip() for arg in args.route for r in arg.split(",") if r.strip()),
                      server_name=args.server_name, leaf_url=args.leaf_remote, leaf_credentials=args.leaf_credentials,
                      leaf_listen=args.leaf_listen, host_overrides=_labels(args.label))

    def ready(urls: dict[str, str]) -> None:
        for name, url in urls.items():
            console.print(f"[bold]{name:>9}[/bold]  {without_credentials(url)}")
        console.print("lattice is up; Ctrl-C stops everything it started")

    try:
        asyncio.run(up(config, on_ready=ready))
    except* UpError as group:
        raise CliError(str(group.exceptions[0])) from None
    return 0


def _labels(pairs: list[str]) -> dict[str, object]:
    """`--label` on top of the HOST_* labels (an override replaces the whole mapping, so they are merged here)."""
    from waft.host.config import HostConfig

    labels = parse_pairs(pairs, "label")
    return {"labels": {**HostConfig.from_env().labels, **labels}} if labels else {}


def _wait_detached(pid: int, log_path: Path, offset: int, wait_s: float = 60.0) -> None:
    """Until the detached lattice says it is up (print its URLs) or exits (a CliError with its error line,
    instead of reporting a start that already failed); after `wait_s` it is left starting."""
    from waft.up import pid_file

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")[offset:] if log_path.exists() else ""
        if "lattice is up" in text:
            for line in text.split("lattice is up", 1)[0].splitlines():
                if re.fullmatch(r"\s*(nats|bindle|host|dashboard)\s+\S+\s*", line):
                    console.print(line)
            console.print("lattice is up")
            return
        try:
            exited = os.waitpid(pid, os.WNOHANG)[0] == pid
        except ChildProcessError:
            exited = True
        if exited:
            pid_file().unlink(missing_ok=True)
            errors = [ln for ln in text.splitlines() if ln.startswith("error:")]
            reason = errors[-1].removeprefix("error:").strip() if errors else "see the log"
            raise CliError(f"the detached lattice exited during start: {reason} (log: {log_path})")
        time.sleep(0.1)
    console.print(f"still starting; its log is {log_path}")


def _down(args: argparse.Namespace) -> int:
    from waft.up import pid_file

    path = pid_file()
    if not path.exists():
        raise CliError("no detached lattice is recorded (nothing to stop); `waft up --detached` starts one")
    pid = int(path.read_text().strip() or 0)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        console.print("the detached lattice had already stopped")
        return 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    console.print("lattice stopped")
    return 0
