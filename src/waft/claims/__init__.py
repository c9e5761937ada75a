"""Keys, signed tokens and module claims, compatible with wasmCloud's wascap."""

from waft.claims.actor import ActorClaims, inspect_actor, sign_actor, verify_actor
from waft.claims.jwt import ClaimsError
from waft.claims.keys import KeyPair, Role

__all__ = ["ActorClaims", "ClaimsError", "KeyPair", "Role", "inspect_actor", "sign_actor", "verify_actor"]
