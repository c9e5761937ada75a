"""The SDK Waft's capability providers are written with: one class, a handler per operation."""

from waft.provider.base import InvocationContext, Provider, ProviderError, operation, run

__all__ = ["InvocationContext", "Provider", "ProviderError", "operation", "run"]
