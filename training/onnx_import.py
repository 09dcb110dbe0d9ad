"""ONNX graphs in: float graphs as ``torch.onnx.export`` writes them, QDQ graphs as ONNX
Runtime's ``quantize_static`` writes them, read into nnhil's own model files.

The graph is walked from its one input along the chain of activations; everything a layer
needs besides that (weights, biases, scales, shapes) must be a constant of the graph (an
initializer, a ``Constant`` node, or a ``DequantizeLinear`` / ``Transpose`` of one). Every
node is checked against what the accelerator computes (valid, stride-1 square convolutions;
2x2/2 max-pools; flatten; dense layers; ReLU after every hidden layer) and anything else is
refused with an :class:`ImportRefused` naming the node, its op type and why, before a file
is written.

A float graph becomes a float model file (``nnhil quantize`` then calibrates it, as for a
model nnhil trained). A QDQ graph becomes a quantized model file directly: its int8 weights
are kept, its scales mapped to the per-channel ``mult``/``shift`` of :mod:`training.fixedpoint`
(the one numeric format), and the ReLU the quantizer removed is inferred from an activation
whose zero point is the bottom of its type. The input scaling: nnhil's standardiser computes
``(pixel / 255 - mean) / std``; a graph's input is ``pixel / 255`` or ``pixel`` (``input_range``
"0-1" or "0-255"), and Sub/Div/Mul/Add by scalars at its start fold into mean and std.
"""
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import fixedpoint as fx

INPUT_RANGES = {"0-1": 1.0 / 255.0, "0-255": 1.0}    # the graph's input per pixel value
DEFAULT_RANGE_WITH_STANDARDIZER = "0-1"             # torchvision's ToTensor, then Normalize
SCALAR_OPS = ("Sub", "Div", "Mul", "Add")
PASS_THROUGH = ("Identity", "Dropout")              # inference no-ops
FINAL_OPS = ("Softmax", "LogSoftmax")                # argmax-preserving: ignored for inference
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


class ImportRefused(ValueError):
    """The graph holds something nnhil cannot run; the message names the node and why."""


def _where(node):
    return f"node {node.name or '(unnamed)'!r} ({node.op_type})"


def refuse(node, why):
    raise ImportRefused(f"{_where(node)}: {why}")


def _attrs(node):
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def sha256_file(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class QTensor:
    """A DequantizeLinear of a constant: integer values, scale and zero point (per axis or not)."""
    values: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int

    def real(self):
        shape = [1] * self.values.ndim
        if self.scale.size > 1:
            shape[self.axis] = -1
        return ((self.values.astype(np.float64) - self.zero_point.astype(np.float64).reshape(shape))
                * self.scale.astype(np.float64).reshape(shape))


@dataclass
class Layer:
    """One conv, pool, flatten or dense step of the chain, with what the walk learnt about it."""
    kind: str                   # "conv", "pool", "flatten", "dense"
    node: object
    weights: object = None      # float [c_out, c_in, k, k] / [n_out, n_in], or a QTensor
    bias: object = None         # float, or a QTensor, or None
    relu: bool = False
    in_q: tuple = None          # (scale, zero point) of the quantized input (QDQ graphs)
    out_q: tuple = None         # (scale, zero point, dtype) of the quantized output (QDQ graphs)
    out_shape: tuple = ()
    output: str = None          # the tensor holding its result (before any quantizer)


@dataclass
class Chain:
    """The walked graph: the input's scaling, the layers, and the tensor holding the logits."""
    input_name: str
    input_shape: tuple          # without the batch dimension
    scale: float = 1.0          # the layers see scale * graph input + offset
    offset: float = 0.0
    has_standardizer: bool = False
    layers: list = field(default_factory=list)
    logits: str = None          # the last layer's raw result (before a Softmax or an output quantizer)
    output: str = None          # the graph's output
    input_q: tuple = None       # (scale, zero point, dtype) of the graph's input quantizer
    qdq: bool = False


class _Graph:
    """Constants, producers and consumers of an ONNX graph."""

    def __init__(self, model):
        from onnx import numpy_helper
        g = model.graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.qconsts = {}
        self.nodes = []
        for node in g.node:
            if node.op_type == "Constant":
                a = _attrs(node)
                if "value" not in a:
                    refuse(node, f"only tensor constants are supported, got {sorted(a)}")
                self.consts[node.output[0]] = numpy_helper.to_array(a["value"])
            else:
                self.nodes.append(node)
        self.consumers = {}
        for node in self.nodes:
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        # constants derived from constants: dequantized weights/biases, transposed weights
        for node in self.nodes:
            if node.op_type == "DequantizeLinear" and node.input[0] in self.consts:
                self.qconsts[node.output[0]] = self._qtensor(node)
            elif node.op_type == "Transpose" and node.input[0] in self.consts:
                perm = _attrs(node).get("perm")
                self.consts[node.output[0]] = np.transpose(self.consts[node.input[0]], perm)
        self.outputs = [o.name for o in g.output]

    def _qtensor(self, node):
        values = self.consts[node.input[0]]
        scale, zp = (self._const(node, i, what) for i, what in ((1, "scale"), (2, "zero point")))
        if zp is None:
            zp = np.zeros_like(scale, dtype=values.dtype)
        return QTensor(values, scale, zp, int(_attrs(node).get("axis", 1)))

    def _const(self, node, i, what):
        if len(node.input) <= i or not node.input[i]:
            return None
        name = node.input[i]
        if name not in self.consts:
            refuse(node, f"its {what} {name!r} is computed in the graph; only constants are supported")
        return self.consts[name]

    def const(self, node, i, what):
        value = self._const(node, i, what)
        if value is None:
            refuse(node, f"its {what} is missing")
        return value

    def next_node(self, tensor):
        """The one node that reads `tensor` (None at a graph output); a fork is refused."""
        users = self.consumers.get(tensor, [])
        if not users:
            return None
        if len(users) > 1:
            refuse(users[1], f"tensor {tensor!r} feeds {len(users)} nodes "
                             f"({', '.join(_where(u) for u in users)}); only a chain of layers is supported")
        return users[0]


def _scalar(node, value):
    v = np.asarray(value, dtype=np.float64)
    if v.size != 1:
        refuse(node, f"its constant has shape {list(v.shape)}; only a scalar input scaling "
                     f"(one mean and one std for all pixels) is supported")
    return float(v.ravel()[0])


def _input(model):
    """The graph's one real input (initializers listed as inputs by old exporters excluded)."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ImportRefused(f"the graph has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                            f"nnhil runs graphs with one image input")
    inp = inputs[0]
    t = inp.type.tensor_type
    if t.elem_type != 1:        # TensorProto.FLOAT
        raise ImportRefused(f"graph input {inp.name!r} has element type {t.elem_type}; a float "
                            f"(FLOAT, 1) image input is expected")
    dims = list(t.shape.dim)
    if len(dims) not in (2, 4):
        raise ImportRefused(f"graph input {inp.name!r} has {len(dims)} dimensions; expected "
                            f"[batch, C, H, W] (channel first) or [batch, features]")
    shape = []
    for k, d in enumerate(dims[1:], 1):
        if not d.HasField("dim_value") or d.dim_value < 1:
            raise ImportRefused(f"graph input {inp.name!r} dimension {k} is dynamic "
                                f"({d.dim_param or 'unknown'!r}); only the batch dimension may be")
        shape.append(int(d.dim_value))
    return inp.name, tuple(shape)


def _conv_shape(node, a, w, in_shape):
    if len(in_shape) != 3:
        refuse(node, f"a convolution needs a (C, H, W) input, its input is {list(in_shape)}")
    if w.ndim != 4:
        refuse(node, f"weights of shape {list(w.shape)}; only 2-D convolutions are supported")
    co, ci, kh, kw = w.shape
    if kh != kw:
        refuse(node, f"kernel {kh}x{kw}; only square kernels are supported")
    checks = {"strides": [1, 1], "dilations": [1, 1], "pads": [0, 0, 0, 0]}
    for name, ok in checks.items():
        if name in a and list(a[name]) != ok:
            refuse(node, f"{name} {list(a[name])}; the accelerator runs valid (unpadded) stride-1 "
                         f"convolutions ({name} {ok})")
    if a.get("group", 1) != 1:
        refuse(node, f"group {a['group']}; only ungrouped convolutions are supported")
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
        refuse(node, f"auto_pad {a['auto_pad']}; only valid (unpadded) convolutions are supported")
    if "kernel_shape" in a and list(a["kernel_shape"]) != [kh, kw]:
        refuse(node, f"kernel_shape {list(a['kernel_shape'])} differs from its weights {[kh, kw]}")
    c, h, wd = in_shape
    if ci != c:
        refuse(node, f"weights take {ci} input channels, its input has {c}")
    if kh > h or kw > wd:
        refuse(node, f"a {kh}x{kw} kernel does not fit a {h}x{wd} input")
    return (co, h - kh + 1, wd - kw + 1)


def _pool_shape(node, a, in_shape):
    if len(in_shape) != 3:
        refuse(node, f"a max-pool needs a (C, H, W) input, its input is {list(in_shape)}")
    if list(a.get("kernel_shape", [])) != [2, 2]:
        refuse(node, f"kernel_shape {list(a.get('kernel_shape', []))}; the accelerator pools 2x2 windows")
    if list(a.get("strides", [1, 1])) != [2, 2]:
        refuse(node, f"strides {list(a.get('strides', [1, 1]))}; the accelerator's 2x2 pool has stride 2")
    if any(a.get("pads", [0])) or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
        refuse(node, "padding; the accelerator's pool is unpadded")
    if list(a.get("dilations", [1, 1])) != [1, 1]:
        refuse(node, f"dilations {list(a['dilations'])}; only undilated pools are supported")
    c, h, w = in_shape
    if a.get("ceil_mode", 0) and (h % 2 or w % 2):
        refuse(node, f"ceil_mode 1 on an odd {h}x{w} input; the accelerator drops the odd row/column")
    if h < 2 or w < 2:
        refuse(node, f"a 2x2 pool needs at least a 2x2 input, got {h}x{w}")
    return (c, h // 2, w // 2)


def _reshape_is_flatten(node, shape, in_shape, allowzero=0):
    n = int(np.prod(in_shape))
    s = [int(v) for v in np.asarray(shape).ravel()]
    batch = (-1, 1) if allowzero else (0, -1, 1)        # allowzero 1: a 0 is a size, not "copy"
    if len(s) == 2 and s[0] in batch and s[1] in (-1, n) and (s[0], s[1]) != (-1, -1):
        return (n,)
    refuse(node, f"reshapes {list(in_shape)} to {s}; only a flatten to [batch, {n}] is supported")


def walk(model, graph=None):
    """The Chain of a loaded ONNX model: every node checked, nothing written."""
    g = graph or _Graph(model)
    name, shape = _input(model)
    chain = Chain(name, shape, qdq=any(n.op_type in QDQ_OPS and n.output[0] not in g.qconsts
                                       for n in g.nodes))
    cur, cur_shape, cur_q = name, shape, None      # cur_q: (scale, zp, dtype) of a quantized activation
    pending_q = None
    while True:
        node = g.next_node(cur)
        if node is None:
            break
        if cur not in node.input[:1] and node.op_type not in SCALAR_OPS:
            refuse(node, f"reads the activation {cur!r} as input {list(node.input).index(cur)}; "
                         f"layers must take it as their first input")
        op, a = node.op_type, _attrs(node)
        last = chain.layers[-1] if chain.layers else None
        if op in SCALAR_OPS:
            if op == "Add" and last is not None and last.node.op_type == "MatMul" and chain.qdq:
                refuse(node, f"adds the bias after {_where(last.node)}'s output was quantized to 8 bits "
                             f"(quantize_static's MatMul + Add), an intermediate the accelerator does not "
                             f"have; export the Linear as Gemm, or fuse MatMul + Add before quantizing")
            if chain.layers or cur_q is not None:
                refuse(node, "a scalar arithmetic node is only supported at the graph's input "
                             "(as the input standardisation)")
            other = [i for i in node.input if i != cur]
            if len(other) != 1 or (op in ("Sub", "Div") and node.input[0] != cur):
                refuse(node, f"expects the input {op.lower()}ed by a constant, got inputs {list(node.input)}")
            c = _scalar(node, g.const(node, list(node.input).index(other[0]), "operand"))
            if op == "Sub":
                chain.offset -= c
            elif op == "Add":
                chain.offset += c
            elif op == "Mul":
                chain.scale, chain.offset = chain.scale * c, chain.offset * c
            else:
                if c == 0:
                    refuse(node, "divides by zero")
                chain.scale, chain.offset = chain.scale / c, chain.offset / c
            chain.has_standardizer = True
        elif op == "QuantizeLinear":
            q = (_scalar(node, g.const(node, 1, "scale")),
                 int(_scalar(node, g.const(node, 2, "zero point"))) if len(node.input) > 2 else 0,
                 np.dtype(g.consts[node.input[2]].dtype).name if len(node.input) > 2 else "uint8")
            if q[2] not in ("uint8", "int8"):
                refuse(node, f"quantizes to {q[2]}; 8-bit activations (uint8 or int8) are expected")
            if last is None:
                chain.input_q = q
            elif last.kind in ("conv", "dense") and last.out_q is None:
                last.out_q = q
            elif last.kind in ("pool", "flatten") and last.in_q is not None and tuple(last.in_q) != q[:2]:
                refuse(node, f"requantizes a {last.kind} output from scale {last.in_q[0]:g}, zero point "
                             f"{last.in_q[1]} to {q[0]:g}, {q[1]}; nnhil's pool and flatten keep the scale")
            pending_q = q
        elif op == "DequantizeLinear":
            if pending_q is None:
                refuse(node, "dequantizes an activation that no QuantizeLinear quantized")
            s, zp = _scalar(node, g.const(node, 1, "scale")), (
                int(_scalar(node, g.const(node, 2, "zero point"))) if len(node.input) > 2 else 0)
            if (s, zp) != pending_q[:2]:
                refuse(node, f"dequantizes with scale {s:g}, zero point {zp}, its QuantizeLinear used "
                             f"{pending_q[0]:g}, {pending_q[1]}")
            cur_q, pending_q = pending_q, None
        elif op in ("Conv", "Gemm", "MatMul"):
            layer = _weighted_layer(g, node, a, op, cur_shape, cur_q, chain)
            chain.layers.append(layer)
            cur_shape = layer.out_shape
            cur_q = None
        elif op == "Relu":
            if last is None or last.kind not in ("conv", "dense", "pool") or last.relu or (
                    last.kind == "pool" and _conv_before(chain) is None):
                refuse(node, "a ReLU is supported only right after a convolution, a pool or a dense layer")
            target = last if last.kind != "pool" else _conv_before(chain)
            target.relu = True
        elif op == "MaxPool":
            if len(node.output) > 1 and node.output[1]:
                refuse(node, "its indices output is not supported")
            out = _pool_shape(node, a, cur_shape)
            if _conv_before(chain) is None or last.kind not in ("conv",):
                refuse(node, "a max-pool is supported only right after a convolution (and its ReLU)")
            chain.layers.append(Layer("pool", node, in_q=cur_q[:2] if cur_q else None, out_shape=out))
            cur_shape = out
        elif op in ("Flatten", "Reshape"):
            if op == "Flatten" and a.get("axis", 1) != 1:
                refuse(node, f"axis {a['axis']}; only a flatten after the batch dimension (axis 1) is supported")
            out = (int(np.prod(cur_shape)),) if op == "Flatten" else \
                _reshape_is_flatten(node, g.const(node, 1, "shape"), cur_shape, a.get("allowzero", 0))
            if not (last is None or last.kind in ("conv", "pool", "dense", "flatten")):
                refuse(node, "a flatten is supported only before the dense layers")
            chain.layers.append(Layer("flatten", node, in_q=cur_q[:2] if cur_q else None, out_shape=out))
            cur_shape = out
        elif op in PASS_THROUGH:
            if op == "Dropout" and len(node.output) > 1 and node.output[1] in g.consumers:
                refuse(node, "its mask output is used")
        elif op in FINAL_OPS:
            if node.output[0] not in g.outputs or g.consumers.get(node.output[0]):
                refuse(node, f"a {op} is supported only as the graph's last node (it is ignored for inference)")
            chain.output = node.output[0]
            cur = node.output[0]
            break
        else:
            refuse(node, "this op type is not supported: nnhil runs Conv, Relu, MaxPool 2x2, "
                         "Flatten/Reshape, Gemm or MatMul(+Add), with Sub/Div at the input and a final Softmax")
        if op == "MatMul":
            nxt = g.next_node(node.output[0])
            if nxt is not None and nxt.op_type == "Add" and chain.layers[-1].bias is None:
                other = [i for i in nxt.input if i != node.output[0]]
                b = g.consts.get(other[0]) if len(other) == 1 else None
                b = g.qconsts.get(other[0], b)
                if b is None:
                    refuse(nxt, "adds a tensor that is not a constant bias to a MatMul")
                chain.layers[-1].bias = b
                node = nxt
        if op in ("Conv", "Gemm", "MatMul"):
            chain.layers[-1].output = node.output[0]
        if op == "QuantizeLinear" and node.output[0] in g.outputs:
            chain.output = node.output[0]
        cur = node.output[0]
    chain.output = chain.output or cur
    if chain.output not in g.outputs:
        raise ImportRefused(f"the chain from input {name!r} ends at {cur!r}, which is not a graph output "
                            f"(outputs: {g.outputs}); only single-chain graphs are supported")
    if len(g.outputs) != 1:
        raise ImportRefused(f"the graph has {len(g.outputs)} outputs {g.outputs}; nnhil's models have one, the logits")
    _check_structure(chain)
    chain.logits = [l for l in chain.layers if l.kind == "dense"][-1].output
    return chain


def _conv_before(chain):
    return chain.layers[-1] if chain.layers and chain.layers[-1].kind == "conv" else (
        chain.layers[-2] if len(chain.layers) > 1 and chain.layers[-1].kind == "pool" and
        chain.layers[-2].kind == "conv" else None)


def _weights(g, node, i, what):
    name = node.input[i] if len(node.input) > i else ""
    if not name:
        return None
    if name in g.qconsts:
        return g.qconsts[name]
    if name in g.consts:
        return g.consts[name].astype(np.float64)
    refuse(node, f"its {what} {name!r} is computed in the graph; weights must be initializers")


def _weighted_layer(g, node, a, op, in_shape, in_q, chain):
    w, b = _weights(g, node, 1, "weights"), _weights(g, node, 2, "bias") if op != "MatMul" else None
    if chain.qdq and in_q is None:
        refuse(node, "its input is not quantized (no QuantizeLinear/DequantizeLinear before it)")
    if chain.qdq and not isinstance(w, QTensor):
        refuse(node, "its weights are float in a quantized graph; quantize them (QDQ) too")
    if op == "Conv":
        wv = w.values if isinstance(w, QTensor) else w
        out = _conv_shape(node, a, wv, in_shape)
        return Layer("conv", node, w, b, in_q=in_q[:2] if in_q else None, out_shape=out)
    if len(in_shape) != 1:
        refuse(node, f"a dense layer needs a flat input, its input is {list(in_shape)}; flatten it first")
    wv = w.values if isinstance(w, QTensor) else w
    if wv.ndim != 2:
        refuse(node, f"weights of shape {list(wv.shape)}; a 2-D matrix is expected")
    if op == "Gemm":
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            refuse(node, f"transA {a.get('transA', 0)}, alpha {a.get('alpha', 1.0)}, beta {a.get('beta', 1.0)}; "
                         f"only y = x W^T + b (transB 1) or x W + b (transB 0) is supported")
        trans = bool(a.get("transB", 0))
    else:
        trans = False
    if not trans:            # [n_in, n_out] -> [n_out, n_in], the format's order
        if isinstance(w, QTensor):
            w = QTensor(w.values.T, w.scale, w.zero_point, 1 - w.axis if w.scale.size > 1 else 0)
        else:
            w = w.T
    wv = w.values if isinstance(w, QTensor) else w
    if wv.shape[1] != in_shape[0]:
        refuse(node, f"weights take {wv.shape[1]} inputs, its input has {in_shape[0]}")
    return Layer("dense", node, w, b, in_q=in_q[:2] if in_q else None, out_shape=(wv.shape[0],))


def _check_structure(chain):
    """conv [pool] ... flatten dense ... dense: ReLU on every hidden layer, none on the last."""
    layers = chain.layers
    weighted = [l for l in layers if l.kind in ("conv", "dense")]
    if not weighted or weighted[-1].kind != "dense":
        where = _where(weighted[-1].node) if weighted else "the graph"
        raise ImportRefused(f"{where}: a model must end in a dense layer (the logits)")
    for layer in weighted[:-1]:
        if chain.qdq:
            _infer_relu(layer)
        if not layer.relu:
            refuse(layer.node, "a hidden layer without a ReLU after it; every hidden layer of the "
                               "accelerator ends in ReLU (uint8 activations)")
    last = weighted[-1]
    if last.relu:
        refuse(last.node, "a ReLU after the last layer; the logits are the raw accumulators")
    seen_dense = False
    for layer in layers:
        if layer.kind == "dense":
            seen_dense = True
        elif layer.kind == "conv" and seen_dense:
            refuse(layer.node, "a convolution after a dense layer is not supported")


def _infer_relu(layer):
    """QDQ: the quantizer drops the ReLU after Conv/Gemm; an output at the bottom of its type
    (uint8 zero point 0, int8 zero point -128) clamps negatives to 0, which is that ReLU."""
    if layer.out_q is None:
        refuse(layer.node, "its output is not quantized (no QuantizeLinear after it)")
    scale, zp, dtype = layer.out_q
    bottom = 0 if dtype == "uint8" else -128
    if zp != bottom:
        refuse(layer.node, f"its output is {dtype} with zero point {zp}: it can be negative, and nnhil's "
                           f"hidden activations are ReLU outputs ({dtype} zero point {bottom})")
    layer.relu = True


def standardizer_of(chain, input_range):
    """(mean, std) of ``(pixel / 255 - mean) / std`` equal to what the graph's first layer sees."""
    a = chain.scale * INPUT_RANGES[input_range] * 255.0     # per (pixel / 255)
    if a <= 0:
        raise ImportRefused(f"the input scaling multiplies pixels by {chain.scale:g}; a positive "
                            f"scale is expected (Div by the std, not by a negative number)")
    std = 1.0 / a
    return 0.0 - chain.offset * std, std          # 0.0 - : no "-0" in the report


def resolve_range(chain, input_range):
    if input_range is not None:
        if input_range not in INPUT_RANGES:
            raise ImportRefused(f"input range {input_range!r}: give one of {', '.join(INPUT_RANGES)}")
        return input_range
    if not chain.has_standardizer:
        raise ImportRefused(f"graph input {chain.input_name!r} has no Sub/Div standardisation, so nnhil "
                            f"cannot tell how it scales pixels: say whether it expects pixels in [0, 1] or "
                            f"[0, 255] with --input-range 0-1 or 0-255")
    return DEFAULT_RANGE_WITH_STANDARDIZER


# Float graphs -----------------------------------------------------------------------------------
def float_model(chain, input_range):
    """(MLP or CNN, Standardizer) of a float chain: conv blocks of any kernel, with or without a pool."""
    from .cnn import CNN
    from .mlp import MLP
    from .train import Standardizer
    mean, std = standardizer_of(chain, input_range)
    convs = [l for l in chain.layers if l.kind == "conv"]
    dense = [l for l in chain.layers if l.kind == "dense"]
    pools = [i + 1 < len(chain.layers) and chain.layers[i + 1].kind == "pool"
             for i, l in enumerate(chain.layers) if l.kind == "conv"]
    if convs:
        kernels = [l.weights.shape[2] for l in convs]
        model = CNN(chain.input_shape, [l.weights.shape[0] for l in convs], kernels[0],
                    [l.weights.shape[0] for l in dense], kernels=kernels, pools=pools)
        model.conv_w = [l.weights.astype(np.float32) for l in convs]
        model.conv_b = [_bias(l).astype(np.float32) for l in convs]
        model.dense_w = [l.weights.T.astype(np.float32).copy() for l in dense]
    else:
        model = MLP([dense[0].weights.shape[1]] + [l.weights.shape[0] for l in dense])
        model.weights = [l.weights.T.astype(np.float32).copy() for l in dense]
    biases = [_bias(l).astype(np.float32) for l in dense]
    if convs:
        model.dense_b = biases
    else:
        model.biases = biases
    return model, Standardizer(mean, std)


def _bias(layer):
    n = layer.weights.shape[0]
    if layer.bias is None:
        return np.zeros(n)
    b = np.asarray(layer.bias, dtype=np.float64).ravel()
    if b.size == 1:
        b = np.full(n, b[0])
    if b.shape != (n,):
        refuse(layer.node, f"bias of {b.size} values for {n} outputs")
    return b


# QDQ graphs -------------------------------------------------------------------------------------
def _per_out(layer, values, what):
    v = np.asarray(values, dtype=np.float64).ravel()
    n = layer.weights.values.shape[0]
    if v.size == 1:
        return np.full(n, v[0])
    if v.size != n:
        refuse(layer.node, f"{what} has {v.size} values for {n} output channels")
    return v


def int_model(chain, input_range, classes=None, meta=None):
    """(IntModel, per-layer report lines, logit scale) of a QDQ chain.

    Weights stay the graph's int8 values. Layer 0 takes raw pixels: the graph's input
    scaling (pixel * range, then the standardiser) folds into its accumulator scale and
    bias, instead of the graph's input quantizer. Each hidden layer's real scale
    in_scale * w_scale[o] / out_scale maps to mult[o] / 2**shift[o]; the last layer's
    per-channel weight scales are requantized to one scale (the format's logits have one),
    scaling every row to the largest and rounding.
    """
    from .intmodel import Conv2D, Dense, IntModel, MaxPool2D
    pixel = chain.scale * INPUT_RANGES[input_range]          # real value per pixel step, layer 0
    offset = chain.offset
    layers, report = [], []
    shape = chain.input_shape
    in_scale = None
    weighted = [l for l in chain.layers if l.kind in ("conv", "dense")]
    for layer in chain.layers:
        if layer.kind == "pool":
            layers.append(MaxPool2D(shape))
            shape = layers[-1].shape_out
            continue
        if layer.kind == "flatten":
            continue
        w = layer.weights
        if np.any(w.zero_point != 0):
            refuse(layer.node, f"weight zero points {np.unique(w.zero_point)[:4].tolist()}; nnhil's "
                               f"weights are symmetric (zero point 0)")
        if w.values.dtype != np.int8:
            refuse(layer.node, f"{w.values.dtype} weights; int8 weights (QInt8) are expected")
        w_scale = _per_out(layer, w.scale, "the weight scale")
        if w.scale.size > 1 and w.axis not in (0, -w.values.ndim) and layer.kind == "conv":
            refuse(layer.node, f"per-channel weight scales on axis {w.axis}; the output-channel axis 0 is expected")
        wq = w.values.astype(np.int64)
        real_b = np.zeros(len(w_scale)) if layer.bias is None else _per_out(
            layer, layer.bias.real() if isinstance(layer.bias, QTensor) else layer.bias, "the bias")
        last = layer is weighted[-1]
        if last and w.scale.size > 1 and np.ptp(w_scale) > 0:
            common = w_scale.max()
            exact = wq * (w_scale / common).reshape((-1,) + (1,) * (wq.ndim - 1))
            new = np.rint(exact).astype(np.int64)
            report.append(f"{_where(layer.node)}: per-channel weight scales of the logits layer requantized to "
                          f"its largest, {common:.6g} (the format's logits share one scale): rounding moves a "
                          f"weight by up to {np.abs(new - exact).max():.3f} of a step")
            wq, w_scale = new, np.full_like(w_scale, common)
        if in_scale is None:             # layer 0: raw pixels
            acc_scale = w_scale * pixel
            sums = wq.reshape(len(wq), -1).sum(axis=1)
            real_b = real_b + w_scale * offset * sums
            if chain.input_q is not None:
                report.append(f"{_where(layer.node)}: input quantizer (scale {chain.input_q[0]:.6g}, zero point "
                              f"{chain.input_q[1]}) replaced by raw pixels (scale {pixel:.6g} per pixel, offset "
                              f"{offset:.6g}) folded into this layer's bias")
        else:
            acc_scale = w_scale * in_scale
        bias = np.rint(real_b / acc_scale)
        if np.any(np.abs(bias) > fx.ACC_MAX):
            refuse(layer.node, "a bias does not fit the 32-bit accumulator at this layer's scale")
        bias = bias.astype(np.int32)
        wq8 = wq.astype(np.int8)
        if last:
            mult, shift = np.zeros(len(bias), np.uint16), np.zeros(len(bias), np.uint8)
            output, logit_scale = fx.OUTPUT_I32, float(acc_scale[0])
        else:
            out_scale, zp, dtype = layer.out_q
            m = acc_scale / out_scale
            try:
                mult, shift = fx.quantize_multiplier(m)
            except ValueError as e:
                refuse(layer.node, f"its requantization scale does not fit the format: {e}")
            mapped = mult.astype(np.float64) / np.exp2(shift.astype(np.float64))
            err = np.abs(mapped - m) / np.where(m > 0, m, 1)
            report.append(f"{_where(layer.node)}: scale in*w/out mapped to mult/2^shift, relative error "
                          f"max {err.max():.2e}, mean {err.mean():.2e} over {len(m)} channels"
                          + (f" ({dtype} activations with zero point {zp} read as uint8 with zero point 0)"
                             if dtype == "int8" else ""))
            output, in_scale = fx.OUTPUT_U8, out_scale
        if layer.kind == "conv":
            layers.append(Conv2D(wq8, bias, mult, shift, output, shape))
            shape = layers[-1].shape_out
        else:
            layers.append(Dense(wq8, bias, mult, shift, output))
        try:
            fx.check_accumulator_range(wq8, bias)
        except ValueError as e:
            refuse(layer.node, str(e))
    try:
        model = IntModel(layers, chain.input_shape, classes, meta)
    except ValueError as e:
        raise ImportRefused(f"the mapped model is not valid for the accelerator: {e}") from e
    return model, report, logit_scale


# The command ------------------------------------------------------------------------------------
@dataclass
class Imported:
    kind: str                 # "float" or "quantized"
    out: Path
    digest: str
    report: list


def import_onnx(path, out, input_range=None, dataset=None, classes=None):
    """Read the ONNX file at `path`, write a float or quantized model file at `out`.

    Everything is checked before `out` is written; an ImportRefused names what is wrong.
    """
    import onnx
    from . import modelfile
    path = Path(path)
    if not path.is_file():
        raise ImportRefused(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path))
    except Exception as e:       # protobuf's DecodeError and friends have no common base
        raise ImportRefused(f"{path}: not a readable ONNX file ({type(e).__name__}: {e})") from None
    chain = walk(model)
    input_range = resolve_range(chain, input_range)
    meta = {"source": "onnx", "dataset": dataset,
            "onnx": {"path": str(path.resolve()), "sha256": sha256_file(path),
                     "kind": "qdq" if chain.qdq else "float", "input": chain.input_name,
                     "input_shape": list(chain.input_shape), "input_range": input_range,
                     "logits": chain.logits, "output": chain.output, "opset": max((o.version for o in model.opset_import
                                                           if o.domain in ("", "ai.onnx")), default=None)}}
    mean, std = standardizer_of(chain, input_range)
    report = [f"input {chain.input_name!r} {list(chain.input_shape)}, pixels in [{input_range.replace('-', ', ')}]: "
              f"the standardiser is (pixel / 255 - {mean:.6g}) / {std:.6g}"]
    if chain.qdq:
        q, lines, logit_scale = int_model(chain, input_range, classes, meta)
        q.meta["onnx"]["logit_scale"] = logit_scale
        last = [l for l in chain.layers if l.kind == "dense"][-1]
        q.meta["onnx"]["logits_quantizer"] = list(last.out_q) if last.out_q else None
        digest = modelfile.save_quantized(out, q)
        return Imported("quantized", Path(out), digest, report + lines)
    fmodel, st = float_model(chain, input_range)
    digest = modelfile.save_float(out, fmodel, st, meta)
    return Imported("float", Path(out), digest, report)
