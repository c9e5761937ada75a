"""The `wasmcloud:httpserver` capability provider: HTTP in, `HttpServer.HandleRequest` out.

Kept import-light: the host imports this package only to read CONTRACT_ID and NAME.
"""

CONTRACT_ID = "wasmcloud:httpserver"
NAME = "HTTP Server"
VERSION = "0.1.0"
