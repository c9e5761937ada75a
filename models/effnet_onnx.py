"""Build an EfficientNet-Lite ONNX graph from its state dict, with onnx.helper only.

Why by hand: the reference implementation (`efficientnet-lite-pytorch` 0.1.0, a port of the TF
`efficientnet_lite_builder.py`) needs torch to run or export. Its architecture is small enough to
restate here: a 3x3/2 stem, seven stages of MBConv blocks (1x1 expand, kxk depthwise, 1x1 project,
residual when shape allows), a 1x1 head to 1280 channels, global average pooling and a linear layer.
Lite specifics: ReLU6 everywhere, no squeeze-excite, stem and head widths and the first/last stage
depths are not scaled. Convolutions use TF "SAME" padding, which pads the extra row/column at the
bottom/right; ONNX Conv takes those asymmetric pads directly, so no Pad node is needed.

Batch norms are folded into the preceding convolution (inference only), in float64 then cast, so
the graph is one Conv per convolution, as torch's exporter would produce in eval mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BN_EPS = 1e-3
OPSET = 13

#: (width, depth, native resolution) from efficientnet_lite_builder.py, as the package has them.
VARIANTS: dict[str, tuple[float, float, int]] = {
    "efficientnet-lite0": (1.0, 1.0, 224),
    "efficientnet-lite1": (1.0, 1.1, 240),
    "efficientnet-lite2": (1.1, 1.2, 260),
}

#: Stage strings of the lite builder: repeats, kernel, stride, expand ratio, in and out filters.
STAGES = ("r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", "r2_k5_s22_e6_i24_o40", "r3_k3_s22_e6_i40_o80",
          "r3_k5_s11_e6_i80_o112", "r4_k5_s22_e6_i112_o192", "r1_k3_s11_e6_i192_o320")


@dataclass(frozen=True)
class Block:
    kernel: int
    stride: int
    expand: int
    cin: int
    cout: int


def round_filters(filters: int, width: float) -> int:
    """TF's rounding of scaled channel counts to multiples of 8, never more than 10% down."""
    if width == 1.0:
        return filters
    divisor = 8
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def blocks_for(variant: str) -> list[Block]:
    """The MBConv blocks in state-dict order (`_blocks.0` ...), as efficientnet-lite-pytorch builds them."""
    width, depth, _ = VARIANTS[variant]
    blocks: list[Block] = []
    for i, spec in enumerate(STAGES):
        opts = {part[0]: part[1:] for part in spec.split("_")}
        cin, cout = round_filters(int(opts["i"]), width), round_filters(int(opts["o"]), width)
        fixed = i in (0, len(STAGES) - 1)  # fix_head_stem: first and last stage keep their depth
        repeats = int(opts["r"]) if fixed else math.ceil(depth * int(opts["r"]))
        if i == 0:
            cin = 32  # the stem is not scaled, so neither is the first stage's input
        kernel, stride, expand = int(opts["k"]), int(opts["s"][0]), int(opts["e"])
        blocks.append(Block(kernel, stride, expand, cin, cout))
        blocks.extend(Block(kernel, 1, expand, cout, cout) for _ in range(repeats - 1))
    return blocks


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding for one axis: (before, after), the odd pixel after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _GraphBuilder:
    """Accumulates nodes and initializers; consumes state-dict entries and checks none is left over."""

    def __init__(self, state: dict[str, np.ndarray]) -> None:
        self.state = state
        self.used: set[str] = set()
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        relu_bounds = (np.array(0.0, np.float32), np.array(6.0, np.float32))
        for name, value in zip(("relu6_min", "relu6_max"), relu_bounds, strict=True):
            self.inits.append(numpy_helper.from_array(value, name))

    def take(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        if key not in self.state:
            raise ValueError(f"state dict lacks {key}: not an EfficientNet-Lite checkpoint of this variant")
        value = self.state[key]
        if shape is not None and value.shape != shape:
            raise ValueError(f"{key} has shape {value.shape}, the architecture expects {shape}")
        self.used.add(key)
        return value

    def conv_bn(self, x: str, name: str, conv: str, bn: str, cin: int, cout: int, kernel: int, stride: int,
                size: int, depthwise: bool = False, relu6: bool = True) -> tuple[str, int]:
        """Conv + folded BatchNorm (+ ReLU6) on a square `size` input; returns (output, output size)."""
        group = cout if depthwise else 1
        weight = self.take(f"{conv}.weight", (cout, 1 if depthwise else cin, kernel, kernel)).astype(np.float64)
        gamma, beta = self.take(f"{bn}.weight", (cout,)), self.take(f"{bn}.bias", (cout,))
        mean, var = self.take(f"{bn}.running_mean", (cout,)), self.take(f"{bn}.running_var", (cout,))
        self.used.add(f"{bn}.num_batches_tracked")
        scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPS)
        w = (weight * scale[:, None, None, None]).astype(np.float32)
        b = (beta.astype(np.float64) - mean.astype(np.float64) * scale).astype(np.float32)
        self.inits += [numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(b, f"{name}.b")]
        before, after = same_pads(size, kernel, stride)
        out = f"{name}.conv"
        self.nodes.append(helper.make_node(
            "Conv", [x, f"{name}.w", f"{name}.b"], [out], name=name, kernel_shape=[kernel, kernel],
            strides=[stride, stride], pads=[before, before, after, after], group=group))
        if relu6:
            self.nodes.append(helper.make_node("Clip", [out, "relu6_min", "relu6_max"], [f"{name}.relu6"],
                                               name=f"{name}.relu6"))
            out = f"{name}.relu6"
        return out, math.ceil(size / stride)


def build_model(state: dict[str, np.ndarray], variant: str, *, input_name: str = "input",
                output_name: str = "logits") -> onnx.ModelProto:
    """The ONNX model (opset 13, batch dimension `N`) for `variant` with the weights in `state`."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    resolution = VARIANTS[variant][2]
    g = _GraphBuilder(state)
    x, size = g.conv_bn(input_name, "stem", "_conv_stem", "_bn0", 3, 32, 3, 2, resolution)
    for i, block in enumerate(blocks_for(variant)):
        prefix, name = f"_blocks.{i}", f"block{i}"
        inner = block.cin * block.expand
        h = x
        if block.expand != 1:
            h, _ = g.conv_bn(h, f"{name}.expand", f"{prefix}._expand_conv", f"{prefix}._bn0",
                             block.cin, inner, 1, 1, size)
        h, out_size = g.conv_bn(h, f"{name}.dw", f"{prefix}._depthwise_conv", f"{prefix}._bn1",
                                inner, inner, block.kernel, block.stride, size, depthwise=True)
        h, _ = g.conv_bn(h, f"{name}.project", f"{prefix}._project_conv", f"{prefix}._bn2",
                         inner, block.cout, 1, 1, out_size, relu6=False)
        if block.stride == 1 and block.cin == block.cout:
            g.nodes.append(helper.make_node("Add", [h, x], [f"{name}.out"], name=f"{name}.add"))
            h = f"{name}.out"
        x, size = h, out_size
    last = blocks_for(variant)[-1].cout
    x, _ = g.conv_bn(x, "head", "_conv_head", "_bn1", last, 1280, 1, 1, size)
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"))
    g.nodes.append(helper.make_node("Flatten", ["pool"], ["features"], name="flatten", axis=1))
    fc_w, fc_b = g.take("_fc.weight", (1000, 1280)), g.take("_fc.bias", (1000,))
    g.inits += [numpy_helper.from_array(fc_w.astype(np.float32), "fc.w"),
                numpy_helper.from_array(fc_b.astype(np.float32), "fc.b")]
    g.nodes.append(helper.make_node("Gemm", ["features", "fc.w", "fc.b"], [output_name], name="fc", transB=1))
    leftover = sorted(set(state) - g.used)
    if leftover:
        raise ValueError(f"state dict has entries the {variant} graph does not use: {leftover[:5]}")
    graph = helper.make_graph(
        g.nodes, variant.replace("-", "_"),
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 3, resolution, resolution])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", 1000])],
        initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="waft-models", producer_version="0.1.0",
                              doc_string=f"{variant}, ImageNet-1k logits; input (x-127)/128 RGB NCHW")
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model
