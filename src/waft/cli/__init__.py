"""The `waft` command line, shaped like wasmCloud's `wash`."""
