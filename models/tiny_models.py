"""The original's two test models, rebuilt byte for byte.

Why rebuild: the original repository's blobs are not available, but its invoices pin their size and
sha256, and their structure is known (a PyTorch-exported Identity in ONNX, tract's plus3 GraphDef).
Writing the protobufs field by field, exactly as their producers did, reproduces the same bytes, so the
invoices' labels (`identity_input_output.onnx` 112 B `eb68abfa...`, `plus3.pb` 129 B `62e74a26...`) hold.
"""

from __future__ import annotations


def identity_onnx() -> bytes:
    """ONNX model as torch 1.9's exporter wrote it: ir 6, opset 9 (no domain field), float [1,4] -> same."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["0"], ["1"], name="Identity_0")
    graph = helper.make_graph(
        [node], "torch-jit-export",
        [helper.make_tensor_value_info("0", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("1", TensorProto.FLOAT, [1, 4])])
    model = onnx.ModelProto(ir_version=6, producer_name="pytorch", producer_version="1.9", graph=graph)
    model.opset_import.add().version = 9  # helper.make_opsetid would also write domain="" (2 more bytes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def plus3_graphdef() -> bytes:
    """TF1 GraphDef: Placeholder `input` (float, no shape), Const `three` = [3.0], `output` = Add.

    No `versions` field and no `shape` attribute, as in tract's file. Built from TensorFlow's protos,
    so TensorFlow is imported only when this model needs building.
    """
    from tensorflow.core.framework import graph_pb2, types_pb2

    graph = graph_pb2.GraphDef()
    placeholder = graph.node.add(name="input", op="Placeholder")
    placeholder.attr["dtype"].type = types_pb2.DT_FLOAT
    three = graph.node.add(name="three", op="Const")
    three.attr["dtype"].type = types_pb2.DT_FLOAT
    value = three.attr["value"].tensor
    value.dtype = types_pb2.DT_FLOAT
    value.tensor_shape.dim.add().size = 1
    value.float_val.append(3.0)
    add = graph.node.add(name="output", op="Add", input=["input", "three"])
    add.attr["T"].type = types_pb2.DT_FLOAT
    return graph.SerializeToString(deterministic=True)
