"""TF1 frozen GraphDef (`graph_encoding` `tensorflow`, e.g. plus3.pb) through `tensorflow.compat.v1`.

TensorFlow is imported here, on the first load of such a model, because importing it costs seconds
and most deployments only serve ONNX. One Session per model; `Session.run` is thread-safe.
The input and output are the metadata's `input_name`/`output_name`, else every Placeholder and every
node nothing else consumes, in graph order: a graph of several inputs and outputs is fed by name (/v2).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from waft.config import setting
from waft.interfaces.mlinference import INVALID_MODEL, TENSORFLOW_ERROR, ModelError
from waft_mlinference.engines.base import IOSpec
from waft_mlinference.metadata import ModelMetadata
from waft_mlinference.settings import ModelOptions

log = logging.getLogger("waft.mlinference.tf")

#: The ops a frozen inference graph is made of. A GraphDef is a program: `ReadFile`, `WriteFile`,
#: `MatchingFiles`, `PyFunc`, queues, readers and the like would run on the provider's host with its rights,
#: so only pure tensor computation is accepted; `WAFT_TF_EXTRA_OPS` (comma-separated) adds others.
ALLOWED_OPS = frozenset("""
Abs Add AddN AddV2 All Any ArgMax ArgMin Assert AvgPool AvgPool3D BatchMatMul BatchMatMulV2 BatchMatMulV3
BatchNormWithGlobalNormalization BatchToSpaceND BiasAdd BiasAddV1 Bitcast BroadcastArgs BroadcastTo Cast Ceil
CheckNumerics ClipByValue Complex ComplexAbs Concat ConcatV2 Const Conv2D Conv2DBackpropInput Conv3D Cos Cosh
CropAndResize Cumsum DepthToSpace DepthwiseConv2dNative Dequantize Div DivNoNan Einsum Elu Enter Equal Erf Exit
Exp ExpandDims Fill Floor FloorDiv FloorMod FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3 FusedPadConv2D
FusedResizeAndPadConv2D Gather GatherNd GatherV2 Greater GreaterEqual Identity IdentityN Imag L2Loss LRN
LeakyRelu Less LessEqual Log Log1p LogSoftmax LogicalAnd LogicalNot LogicalOr LoopCond MatMul Max MaxPool
MaxPool3D MaxPoolV2 Maximum Mean Merge Min Minimum MirrorPad Mod Mul Neg NextIteration NoOp NonMaxSuppressionV2
NonMaxSuppressionV3 NonMaxSuppressionV4 NonMaxSuppressionV5 NotEqual OneHot OnesLike Pack Pad PadV2 Placeholder
PlaceholderWithDefault Pow Prod QuantizeV2 Range Rank Real RealDiv Reciprocal Relu Relu6 Reshape ResizeBicubic
ResizeBilinear ResizeNearestNeighbor Reverse ReverseV2 Round Rsqrt Select SelectV2 Selu Shape ShapeN Sigmoid
Sign Sin Sinh Size Slice Snapshot Softmax Softplus Softsign SpaceToBatchND SpaceToDepth Split SplitV Sqrt
Square SquaredDifference Squeeze StopGradient StridedSlice Sub Sum Switch Tan Tanh Tile TopK TopKV2 Transpose
Unpack Where ZerosLike _FusedConv2D _FusedMatMul
""".split())


def disallowed_ops(graph_def: Any, extra: frozenset[str] = frozenset()) -> list[str]:
    """Op types of the graph (its function library included) outside the allow-list, sorted."""
    allowed = ALLOWED_OPS | extra
    used = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        used |= {node.op for node in function.node_def}
    return sorted(used - allowed)


def import_tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow.compat.v1 as tf

    return tf


def _spec(tensor: Any) -> IOSpec:
    dtype = tensor.dtype.as_numpy_dtype
    shape = tensor.shape
    dims = None if shape.rank is None else tuple(shape.as_list())
    return IOSpec(tensor.name.split(":")[0], np.dtype(dtype), dims)


class TfGraphEngine:
    encoding = "tensorflow"
    error_variant = TENSORFLOW_ERROR
    warning: str | None = None

    def __init__(self, path: Path, meta: ModelMetadata, options: ModelOptions) -> None:
        tf = import_tf()
        target = options.execution_target or meta.execution_target
        self.target = "cpu"
        if target != "cpu":
            self.warning = f"execution_target {target} requested; tensorflow-cpu runs it on cpu"
            log.warning("%s: %s", path.name, self.warning)
        graph_def = tf.GraphDef()
        try:
            graph_def.ParseFromString(path.read_bytes())
        except Exception as exc:  # protobuf's DecodeError
            raise ModelError(INVALID_MODEL, f"{path.name} is not a TensorFlow GraphDef: {exc}") from None
        extra = frozenset(filter(None, (setting("tf_extra_ops", "") or "").replace(" ", "").split(",")))
        refused = disallowed_ops(graph_def, extra)
        if refused:
            raise ModelError(INVALID_MODEL, f"{path.name} uses ops a served graph may not run: {', '.join(refused)} "
                                            "(only tensor computation is allowed; WAFT_TF_EXTRA_OPS adds ops)")
        self.graph = tf.Graph()
        try:
            with self.graph.as_default():
                tf.import_graph_def(graph_def, name="")
        except Exception as exc:
            raise ModelError(INVALID_MODEL, f"{path.name}: cannot import the graph: {exc}") from None
        ops = self.graph.get_operations()
        consumed = {t.op.name for op in ops for t in op.inputs}
        in_names = [meta.input_name] if meta.input_name else _some(
            [op.name for op in ops if op.type == "Placeholder"], "Placeholder", path)
        out_names = [meta.output_name] if meta.output_name else _some(
            [op.name for op in ops if op.name not in consumed and op.type not in ("Placeholder", "Const", "NoOp")],
            "output", path)
        try:
            self._in = [self.graph.get_tensor_by_name(f"{name}:0") for name in in_names]
            self._out = [self.graph.get_tensor_by_name(f"{name}:0") for name in out_names]
        except (KeyError, ValueError) as exc:
            raise ModelError(INVALID_MODEL, f"{path.name}: {exc}") from None
        self.inputs, self.outputs = [_spec(t) for t in self._in], [_spec(t) for t in self._out]
        self._by_name = {spec.name: tensor for spec, tensor in zip(self.inputs, self._in, strict=True)}
        config = tf.ConfigProto(intra_op_parallelism_threads=options.threads_per_run,
                                inter_op_parallelism_threads=options.inter_op_threads)
        self.session = tf.Session(graph=self.graph, config=config)

    def run(self, array: np.ndarray) -> list[np.ndarray]:
        return self.run_named({self.inputs[0].name: array})

    def run_named(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Every output for one array per input name (names as `inputs` declares them, checked by the runner)."""
        answers = self.session.run(self._out, {self._by_name[name]: array for name, array in feeds.items()})
        return [np.asarray(a) for a in answers]

    def close(self) -> None:
        self.session.close()


def _some(names: list[str], what: str, path: Path) -> list[str]:
    if not names:
        raise ModelError(INVALID_MODEL, f"{path.name}: the graph has no {what} node; name one in the metadata "
                                        f"(input_name/output_name)")
    return names
