"""Model repository: a bindle v0.7.1-compatible server (aiohttp, file storage) and its client.

Other parts import from here: `BindleClient` to fetch and push, `Invoice`/`Parcel`/`Label` for the
schema, `BindleId` for ids.
"""
