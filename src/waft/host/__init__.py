"""A Waft host: runs signed WebAssembly actors in wasmtime and supervises capability providers.

`Host(HostConfig(...)).run()` joins a lattice and serves until `stop()`; `run_host` is the same for
`waft host`. The rest of the package is how: `wapc` (the waPC ABI and sandbox limits), `actors`
(instance pools), `routing` and `builtins` (where a guest's host call goes), `providers` (the
supervisor) and `provider_refs` (what a provider reference means), `control` (the ctl interface,
through the narrow `Controlled` protocol), `events`, and `lattice_cache`.
"""

from waft.host.config import HostConfig
from waft.host.host import Host, HostNotRunning, StartError, run_host
from waft.host.wapc import ActorTrap, GuestError, HostCallError, Limits

__all__ = ["ActorTrap", "GuestError", "Host", "HostCallError", "HostConfig", "HostNotRunning", "Limits", "StartError",
           "run_host"]
