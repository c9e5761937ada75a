"""Link values -> which models an actor uses and how each is served, read as the original provider read them.

The original (`bin/main.rs put_link`, `settings.rs`) lower-cased the link value keys, took `config_b64`
(base64 JSON) and let `config_json` (raw JSON) override it, and read `{"models": {"zoo": {route:
"<bindle name>/<version>"}}}`, ignoring other keys (`values`, `lazy_load`). We accept that unchanged and
add, all optional:

- `bindle_url` link value (else env `BINDLE_URL`, else the bindle client's default) — the original only
  read the environment;
- `model_dir` link value (else env `WAFT_ML_MODEL_DIR`): load from a directory of built model folders
  (`build/models` layout: `<dir>/invoice.toml` + parcels named by label) instead of a bindle server.
  Precedence: link `model_dir`, link `bindle_url`, env `WAFT_ML_MODEL_DIR`, env `BINDLE_URL`;
- limits for every model in `models.defaults` and per route in `models.options.<route>`:
  `max_concurrent`, `max_queue`, `intra_op_threads`, `inter_op_threads`, `max_tensor_bytes`,
  `execution_target` (overrides the metadata's), `batch: {max_items, max_delay_ms}` (micro-batching,
  off unless given), `spin_wait` (onnxruntime's busy-waiting worker threads, off unless given),
  `load_attempts` and `load_backoff_ms` (retrying an unreachable bindle server);
  plain link values of the same names and `WAFT_ML_<NAME>` env variables set the
  defaults too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from waft.provider.link_values import SettingsError, b64_json, json_object, lowercase_keys

DEFAULT_MAX_CONCURRENT = min(4, os.cpu_count() or 1)
DEFAULT_MAX_QUEUE = 64
DEFAULT_MAX_TENSOR_BYTES = 64 * 1024 * 1024
DEFAULT_BATCH_ITEMS = 8
DEFAULT_BATCH_DELAY_MS = 2.0
DEFAULT_LOAD_ATTEMPTS = 5
DEFAULT_LOAD_BACKOFF_MS = 500
LIMIT_KEYS = ("max_concurrent", "max_queue", "intra_op_threads", "inter_op_threads", "max_tensor_bytes",
              "execution_target", "spin_wait", "load_attempts", "load_backoff_ms")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
BINDLE_ID = re.compile(r"^[^/\s]+(?:/[^/\s]+)*/[^/\s]+$")


@dataclass(frozen=True)
class BatchSettings:
    """Gather concurrent requests of one model into one run: up to `max_items` rows or `max_delay_ms`."""

    max_items: int = DEFAULT_BATCH_ITEMS
    max_delay_ms: float = DEFAULT_BATCH_DELAY_MS


@dataclass(frozen=True)
class ModelOptions:
    """How one model is served. Frozen and hashable: two links asking for the same bindle with the
    same options share one loaded model."""

    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    max_queue: int = DEFAULT_MAX_QUEUE
    intra_op_threads: int = 0  # 0: auto, see `threads_per_run`
    inter_op_threads: int = 0
    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES
    execution_target: str | None = None  # None: as the metadata says
    batch: BatchSettings | None = None
    #: onnxruntime's intra-op workers busy-wait between runs unless told not to. Off by default: under
    #: load on a 2-core machine the spinning threads burned the cores the host's actors needed
    #: (effnetlite0 with 2 intra-op threads: 26-30 ms of provider CPU per /matches request spinning,
    #: 15.5 ms not; end-to-end max rate 52 -> 60 req/s in one run). Turn it on for a machine that
    #: serves nothing but this model, where the spinning buys back a little latency.
    spin_wait: bool = False
    #: Fetches from a bindle server that cannot be reached (or answers 5xx) are retried, waiting
    #: load_backoff_ms, then twice that, ... (capped at 30 s), load_attempts tries in all.
    load_attempts: int = DEFAULT_LOAD_ATTEMPTS
    load_backoff_ms: int = DEFAULT_LOAD_BACKOFF_MS


    @property
    def threads_per_run(self) -> int:
        """Intra-op threads for one run. Auto gives each of the `max_concurrent` runs twice its share of
        the cores (capped at all of them), because idle workers no longer spin: measured on the 2-core
        machine (effnetlite0, 2 concurrent runs, in-process runner), 2 threads per run against 1 took
        concurrency-1 p50 from 12.95 to 8.31 ms and cost 3% of throughput at concurrency 8 (138.7 vs
        143.4 req/s). With `spin_wait` the runs get an equal share and no more: spinning workers fight
        over shared cores (2 threads per run spinning: 118.6 req/s at concurrency 8)."""
        if self.intra_op_threads:
            return self.intra_op_threads
        cores = os.cpu_count() or 1
        share = max(1, cores // self.max_concurrent)
        return share if self.spin_wait else min(cores, 2 * share)


@dataclass(frozen=True)
class LinkSettings:
    zoo: dict[str, str]
    bindle_url: str | None = None
    model_dir: Path | None = None
    options: dict[str, ModelOptions] = field(default_factory=dict)

    def options_for(self, route: str) -> ModelOptions:
        return self.options.get(route, ModelOptions())


def _int(value: object, what: str, minimum: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise SettingsError(f"invalid {what} {value!r}: expected a whole number") from None
    if number < minimum:
        raise SettingsError(f"invalid {what} {number}: must be at least {minimum}")
    return number


def _bool(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise SettingsError(f"invalid {what} {value!r}: expected true or false")


def _options(data: object, base: ModelOptions, what: str) -> ModelOptions:
    if not isinstance(data, Mapping):
        raise SettingsError(f"invalid {what}: expected a JSON object")
    data = {str(k).lower(): v for k, v in data.items()}
    changes: dict[str, Any] = {}
    for key, minimum in (("max_concurrent", 1), ("max_queue", 0), ("intra_op_threads", 0),
                         ("inter_op_threads", 0), ("max_tensor_bytes", 1), ("load_attempts", 1),
                         ("load_backoff_ms", 0)):
        if data.get(key) is not None:
            changes[key] = _int(data[key], f"{what}.{key}", minimum)
    if data.get("execution_target") is not None:
        target = str(data["execution_target"]).lower()
        if target not in ("cpu", "gpu", "tpu"):
            raise SettingsError(f"invalid {what}.execution_target {target!r}: use cpu, gpu or tpu")
        changes["execution_target"] = target
    if data.get("spin_wait") is not None:
        changes["spin_wait"] = _bool(data["spin_wait"], f"{what}.spin_wait")
    if "batch" in data:
        batch = data["batch"]
        if batch in (None, False):
            changes["batch"] = None
        elif batch is True:
            changes["batch"] = BatchSettings()
        elif isinstance(batch, Mapping):
            batch = {str(k).lower(): v for k, v in batch.items()}
            try:
                delay = float(batch.get("max_delay_ms", DEFAULT_BATCH_DELAY_MS))
            except (TypeError, ValueError):
                raise SettingsError(f"invalid {what}.batch.max_delay_ms {batch.get('max_delay_ms')!r}") from None
            if not 0 <= delay <= 1000:
                raise SettingsError(f"invalid {what}.batch.max_delay_ms {delay}: use 0..1000")
            changes["batch"] = BatchSettings(_int(batch.get("max_items", DEFAULT_BATCH_ITEMS),
                                                  f"{what}.batch.max_items", 1), delay)
        else:
            raise SettingsError(f"invalid {what}.batch: expected true, false or {{max_items, max_delay_ms}}")
    return replace(base, **changes)


def load_settings(values: Mapping[str, str], env: Mapping[str, str] | None = None) -> LinkSettings:
    """Read one link's values; raise SettingsError naming what is wrong (the link is then refused)."""
    env = os.environ if env is None else env
    lowered = lowercase_keys(values)

    config: dict[str, Any] = {}
    if "config_b64" in lowered:
        config = b64_json(lowered["config_b64"])
    if "config_json" in lowered:  # overrides config_b64, as in the original
        config = json_object(lowered["config_json"], "config_json")
    models = config.get("models") or {}
    if not isinstance(models, Mapping):
        raise SettingsError("invalid config: 'models' must be an object holding 'zoo'")
    zoo = models.get("zoo") or {}
    if not isinstance(zoo, Mapping) or not zoo:
        raise SettingsError("link values hold no models: expected config_json or config_b64 with "
                            '{"models": {"zoo": {"<route>": "<bindle name>/<version>"}}}')
    for route, bindle_id in zoo.items():
        if not isinstance(bindle_id, str) or not BINDLE_ID.match(bindle_id):
            raise SettingsError(f"invalid zoo entry {route!r}: {bindle_id!r} is not '<bindle name>/<version>'")

    defaults = ModelOptions()
    env_limits = {key: env[f"WAFT_ML_{key.upper()}"] for key in LIMIT_KEYS if env.get(f"WAFT_ML_{key.upper()}")}
    defaults = _options(env_limits, defaults, "WAFT_ML_* environment")
    defaults = _options(models.get("defaults") or {}, defaults, "models.defaults")
    defaults = _options({k: lowered[k] for k in LIMIT_KEYS if k in lowered}, defaults, "link values")
    per_route = models.get("options") or {}
    if not isinstance(per_route, Mapping):
        raise SettingsError("invalid models.options: expected an object keyed by route")
    unknown = sorted(set(per_route) - set(zoo))
    if unknown:
        raise SettingsError(f"models.options names {', '.join(unknown)}, which the zoo does not hold")
    options = {str(route): _options(per_route.get(route) or {}, defaults, f"models.options.{route}")
               for route in zoo}

    # The link's own choice wins over the environment; a model_dir wins over a bindle URL at the same level.
    model_dir: str | None = None
    bindle_url: str | None = None
    if lowered.get("model_dir"):
        model_dir = lowered["model_dir"]
    elif lowered.get("bindle_url"):
        bindle_url = lowered["bindle_url"]
    elif env.get("WAFT_ML_MODEL_DIR"):
        model_dir = env["WAFT_ML_MODEL_DIR"]
    else:
        bindle_url = env.get("BINDLE_URL") or None  # None: the bindle client's default
    if model_dir is not None and not Path(model_dir).is_dir():
        raise SettingsError(f"model_dir {model_dir!r} is not a directory")
    return LinkSettings({str(k): v for k, v in zoo.items()}, bindle_url,
                        Path(model_dir) if model_dir else None, options)
