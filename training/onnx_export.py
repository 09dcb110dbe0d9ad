"""A quantized nnhil model as an ONNX graph of integer ops that ONNX Runtime computes bit for
bit like :class:`training.intmodel.IntModel` (the numeric format of :mod:`training.fixedpoint`).

The forms are chosen so that no kernel can round or saturate on any x86 CPU:

- products and sums run as int32 ``MatMul`` (ONNX Runtime's generic integer GEMM, exact while
  the sums fit int32, which :func:`fixedpoint.check_accumulator_range` guarantees), never as
  ``MatMulInteger``/``ConvInteger``, whose uint8 x int8 kernels on CPUs without VNNI add pairs
  of products in saturating 16-bit lanes (255 * 127 * 2 = 64,770 > 32,767);
- a convolution is an im2col of k*k ``Slice``s concatenated over channels (NHWC), then one
  int32 ``MatMul``; its tensor goes back to channel-major (C, H, W) for the pool and flatten;
- requantization is int64 ``Mul`` by mult, ``Add`` of 2^(shift-1), ``Div`` by 2^shift (it
  truncates toward zero where the hardware shifts toward -inf: they differ only for negative
  values, which the clip takes to 0 either way), ``Clip`` to 0..255, ``Cast`` to uint8;
- ``MaxPool`` on uint8 (opset 12 or later); the logits are the int32 accumulators.
"""
import numpy as np

from . import fixedpoint as fx
from .intmodel import Conv2D, Dense, MaxPool2D

OPSET = 13
INPUT, OUTPUT = "pixels", "logits"


class _Builder:
    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, what):
        self.count += 1
        return f"{what}_{self.count}"

    def const(self, what, value):
        from onnx import numpy_helper
        n = self.name(what)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), n))
        return n

    def op(self, op_type, inputs, what=None, **attrs):
        from onnx import helper
        out = self.name(what or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _cast(b, x, to):
    from onnx import TensorProto
    return b.op("Cast", [x], to={"int32": TensorProto.INT32, "int64": TensorProto.INT64,
                                 "uint8": TensorProto.UINT8}[to])


def _requantize(b, acc, layer):
    """uint8 activations of int32 accumulators whose channels are on the last axis."""
    x = _cast(b, acc, "int64")
    x = b.op("Mul", [x, b.const("mult", layer.mult.astype(np.int64))])
    shift = layer.shift.astype(np.int64)
    x = b.op("Add", [x, b.const("round", np.left_shift(np.int64(1), shift - 1))])
    x = b.op("Div", [x, b.const("pow2", np.left_shift(np.int64(1), shift))])
    x = b.op("Clip", [x, b.const("zero", np.int64(0)), b.const("act_max", np.int64(fx.ACT_MAX))])
    return _cast(b, x, "uint8")


def _dense(b, x, layer):
    x = b.op("Reshape", [x, b.const("flat", np.array([0, -1], np.int64))])
    x = _cast(b, x, "int32")
    acc = b.op("MatMul", [x, b.const("weights", layer.weights.T.astype(np.int32))])
    acc = b.op("Add", [acc, b.const("bias", layer.bias.astype(np.int32))])
    return acc if layer.output == fx.OUTPUT_I32 else _requantize(b, acc, layer)


def _conv(b, x, layer):
    _, h, w = layer.in_shape
    co, ci, k, _ = layer.weights.shape
    _, ho, wo = layer.shape_out
    x = b.op("Transpose", [_cast(b, x, "int32")], perm=[0, 2, 3, 1])       # NHWC
    axes = b.const("hw_axes", np.array([1, 2], np.int64))
    taps = [b.op("Slice", [x, b.const("start", np.array([i, j], np.int64)),
                           b.const("end", np.array([i + ho, j + wo], np.int64)), axes])
            for i in range(k) for j in range(k)]
    cols = b.op("Concat", taps, axis=3) if len(taps) > 1 else taps[0]        # [N, Ho, Wo, (i, j, c)]
    wm = layer.weights.transpose(2, 3, 1, 0).reshape(k * k * ci, co).astype(np.int32)
    acc = b.op("MatMul", [cols, b.const("weights", wm)])
    acc = b.op("Add", [acc, b.const("bias", layer.bias.astype(np.int32))])
    if layer.output == fx.OUTPUT_I32:
        return b.op("Transpose", [acc], perm=[0, 3, 1, 2])
    return b.op("Transpose", [_requantize(b, acc, layer)], perm=[0, 3, 1, 2])   # NCHW uint8


def to_onnx(model):
    """The onnx.ModelProto of an IntModel: uint8 input [N, *input_shape], int32 logits [N, n_out]."""
    from onnx import TensorProto, checker, helper
    b = _Builder()
    x = INPUT
    for layer in model.layers:
        if isinstance(layer, Conv2D):
            if x == INPUT or len(model.input_shape) != 3:
                x = b.op("Reshape", [x, b.const("chw", np.array([0, *layer.in_shape], np.int64))])
            x = _conv(b, x, layer)
        elif isinstance(layer, MaxPool2D):
            x = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
        elif isinstance(layer, Dense):
            x = _dense(b, x, layer)
        else:
            raise TypeError(f"no ONNX form for layer {type(layer).__name__}")
    b.nodes[-1].output[0] = OUTPUT
    n_out = model.n_out
    graph = helper.make_graph(
        b.nodes, "nnhil_int", [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["N", *model.input_shape])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.INT32, ["N", n_out])], b.inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                   producer_name="nnhil", doc_string=f"nnhil model {getattr(model, 'hash', '')}")
    onnx_model.ir_version = 8           # readable by every ONNX Runtime with opset 13
    checker.check_model(onnx_model, full_check=True)
    return onnx_model


def export(model, path):
    """Write the IntModel as an ONNX file; returns the path."""
    import onnx
    onnx.save(to_onnx(model), str(path))
    return path


def float_to_onnx(model, standardizer, linear="gemm", softmax=False):
    """The float graph of a float MLP or CNN in the node patterns torch.onnx.export writes
    (Conv, Relu, MaxPool, Flatten, then Gemm transB=1, or MatMul + Add with ``linear="matmul"``
    as the dynamo exporter writes a Linear), with the standardiser as Sub/Div at the input:
    the graph takes pixel / 255, float32 [N, C, H, W] (a CNN) or [N, n_in] (an MLP)."""
    from onnx import TensorProto, checker, helper
    b = _Builder()
    x = b.op("Sub", ["input", b.const("mean", np.float32(standardizer.mean))])
    x = b.op("Div", [x, b.const("std", np.float32(standardizer.std))])
    conv_w = getattr(model, "conv_w", [])
    for w, bias, pool in zip(conv_w, getattr(model, "conv_b", []), getattr(model, "pools", [])):
        k = w.shape[2]
        x = b.op("Conv", [x, b.const("conv.weight", w.astype(np.float32)), b.const("conv.bias", bias.astype(np.float32))],
                 dilations=[1, 1], group=1, kernel_shape=[k, k], pads=[0, 0, 0, 0], strides=[1, 1])
        x = b.op("Relu", [x])
        if pool:
            x = b.op("MaxPool", [x], ceil_mode=0, kernel_shape=[2, 2], pads=[0, 0, 0, 0], strides=[2, 2])
    if conv_w:
        x = b.op("Flatten", [x], axis=1)
    dense_w = model.dense_w if conv_w else model.weights
    dense_b = model.dense_b if conv_w else model.biases
    for i, (w, bias) in enumerate(zip(dense_w, dense_b)):        # w [n_in, n_out]
        if linear == "gemm":
            x = b.op("Gemm", [x, b.const("fc.weight", w.T.astype(np.float32)), b.const("fc.bias", bias.astype(np.float32))],
                     alpha=1.0, beta=1.0, transB=1)
        else:
            x = b.op("MatMul", [x, b.const("fc.weight_T", w.astype(np.float32))])
            x = b.op("Add", [x, b.const("fc.bias", bias.astype(np.float32))])
        if i < len(dense_w) - 1:
            x = b.op("Relu", [x])
    if softmax:
        x = b.op("Softmax", [x], axis=1)
    b.nodes[-1].output[0] = "output"
    shape = ["N", *model.input_shape] if conv_w else ["N", model.sizes[0]]
    n_out = dense_w[-1].shape[1]
    graph = helper.make_graph(b.nodes, "float", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", n_out])], b.inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="nnhil")
    onnx_model.ir_version = 8
    checker.check_model(onnx_model, full_check=True)
    return onnx_model


def export_float(model, standardizer, path, **patterns):
    """Write the float graph of float_to_onnx; returns the path."""
    import onnx
    onnx.save(float_to_onnx(model, standardizer, **patterns), str(path))
    return path
