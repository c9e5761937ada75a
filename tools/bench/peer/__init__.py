"""The peer server's code (issue 9): files the peer virtualenv runs, so nothing here imports waft.

`pipeline.py` is the plain Pillow + numpy + onnxruntime classifier; `bentoml_service.py` serves it
with BentoML; `plot_latency.py` draws docs/benchmarks/latency.png from JSON with matplotlib.
"""
