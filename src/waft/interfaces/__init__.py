"""The capability contracts Waft serves, one module per interface, each the only Python source of its wire.

- `waft.interfaces.mlinference`: `wasmcloud:mlinference`: Tensor, InferenceInput/Output, the MlError
  variants, value types, and the model status a provider reports in ListModels and in its health.
- `waft.interfaces.httpserver`: `wasmcloud:httpserver`: HttpRequest/HttpResponse, the JSON error body,
  and the access record the httpserver provider publishes for every request.

A provider, an actor's tests, the dashboard and the benchmarks import the same module, so a change
to a contract is made once. The C actors carry their own copy of the wire (under `actors/`), which
`docs/interfaces.md` describes field by field. The modules here import only numpy and msgpack (never
onnxruntime or aiohttp), so anything in the project may use them cheaply; this package imports none
of them itself.

The lattice's own protocol (invocations, links, health checks, CloudEvents) is not a capability
contract and lives in `waft.lattice`.
"""
