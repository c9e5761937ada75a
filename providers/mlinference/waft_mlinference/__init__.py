"""The `wasmcloud:mlinference` capability provider: ONNX Runtime and TensorFlow behind MlInference.Predict.

Kept import-light: the host imports this package only to read CONTRACT_ID and NAME.
"""

CONTRACT_ID = "wasmcloud:mlinference"
NAME = "ML Inference"
VERSION = "0.1.0"
