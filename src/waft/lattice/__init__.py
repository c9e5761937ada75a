"""The wasmCloud 0.x wire protocol: structs, subjects, msgpack, signing and chunking."""

from waft.lattice.rpc import InvocationRejected, LatticeConfig, LatticeRpc, RpcError
from waft.lattice.types import Invocation, InvocationResponse, LinkDefinition, WasmCloudEntity

__all__ = ["Invocation", "InvocationRejected", "InvocationResponse", "LatticeConfig", "LatticeRpc",
           "LinkDefinition", "RpcError", "WasmCloudEntity"]
