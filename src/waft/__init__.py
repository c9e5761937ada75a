"""Waft: a wasmCloud-style actor runtime that serves machine-learning inference."""

__version__ = "0.1.0"
