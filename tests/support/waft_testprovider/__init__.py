"""A small provider written on the SDK, for the lattice tests (contract `waft:test`)."""

CONTRACT_ID = "waft:test"
NAME = "Test provider"
