"""nnhil import: ONNX graphs in the node patterns the exporters write, checked against ONNX
Runtime (the float graphs), quantize_static's own QDQ output (made here), and every refusal
naming its node before anything is written."""
import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from nnhil.host import cli, oracle
from nnhil.training import modelfile, onnx_export
from nnhil.training.cnn import CNN
from nnhil.training.intmodel import MaxPool2D
from nnhil.training.mlp import MLP
from nnhil.training.onnx_import import ImportRefused, import_onnx
from nnhil.training.train import Standardizer

RNG = np.random.default_rng(29)
ST = Standardizer(0.2860, 0.3530)          # Fashion-MNIST's, as nnhil train fits it


def small_cnn(seed=0, shape=(1, 13, 11), kernel=2):
    """A CNN of odd sizes with biases (the trainer starts them at zero)."""
    m = CNN(shape, (3, 4), kernel, (6, 5), seed=seed)
    rng = np.random.default_rng(seed + 1)
    m.conv_b = [rng.standard_normal(b.shape).astype(np.float32) * 0.1 for b in m.conv_b]
    m.dense_b = [rng.standard_normal(b.shape).astype(np.float32) * 0.1 for b in m.dense_b]
    return m


def small_mlp(seed=0):
    m = MLP([60, 9, 4], seed=seed)
    m.biases = [np.random.default_rng(seed).standard_normal(b.shape).astype(np.float32) * 0.1 for b in m.biases]
    return m


def images(n, shape):
    return RNG.integers(0, 256, (n, *shape), dtype=np.uint8)


def ort_run(model_or_path, x):
    src = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    s = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def save(model, path):
    onnx.save(model, str(path))
    return str(path)


@pytest.mark.parametrize("linear", ["gemm", "matmul"])
@pytest.mark.parametrize("arch", ["cnn", "mlp"])
def test_float_graph_imports_to_the_same_function(tmp_path, arch, linear):
    """torch.onnx.export's patterns (Gemm transB=1 of the TorchScript exporter, MatMul+Add of
    the dynamo one; a trailing Softmax), a symbolic batch: the float model file computes what
    ONNX Runtime computes on the graph, standardiser included."""
    model = small_cnn() if arch == "cnn" else small_mlp()
    src = save(onnx_export.float_to_onnx(model, ST, linear, softmax=True), tmp_path / "m.onnx")
    result = import_onnx(src, tmp_path / "float.npz")
    assert result.kind == "float"
    fmodel, st, meta = modelfile.load_float(tmp_path / "float.npz")
    assert (st.mean, st.std) == pytest.approx((ST.mean, ST.std), rel=1e-6)
    assert meta["onnx"]["sha256"] == hashlib.sha256(open(src, "rb").read()).hexdigest()
    shape = model.input_shape if arch == "cnn" else (60,)
    imgs = images(50, shape)
    x = oracle.graph_input(imgs, meta["onnx"])
    probs = ort_run(src, x)
    ours = fmodel.logits(st(imgs))
    ours = np.exp(ours - ours.max(1, keepdims=True))
    np.testing.assert_allclose(ours / ours.sum(1, keepdims=True), probs, atol=2e-5)
    # the oracle reads the logits before the Softmax
    logits, output = oracle.run_onnx(meta["onnx"], imgs)
    np.testing.assert_allclose(logits, fmodel.logits(st(imgs)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(output, probs)


def test_input_range_0_255_without_standardizer(tmp_path):
    """A graph fed raw pixels, no Sub/Div: --input-range 0-255 makes std 1/255, mean 0."""
    model = small_mlp(3)
    g = onnx_export.float_to_onnx(model, Standardizer(0.0, 1.0))
    g.graph.node[2].input[0] = "input"                 # Sub/Div dropped: Gemm reads the input
    del g.graph.node[:2]
    src = save(g, tmp_path / "raw.onnx")
    with pytest.raises(ImportRefused, match="no Sub/Div standardisation.*--input-range 0-1 or 0-255"):
        import_onnx(src, tmp_path / "f.npz")
    assert not (tmp_path / "f.npz").exists()
    import_onnx(src, tmp_path / "f.npz", input_range="0-255")
    fmodel, st, _ = modelfile.load_float(tmp_path / "f.npz")
    assert (st.mean, st.std) == (0.0, pytest.approx(1 / 255))
    imgs = images(20, (60,))
    np.testing.assert_allclose(fmodel.logits(st(imgs)), ort_run(src, imgs.astype(np.float32)), rtol=1e-4, atol=1e-3)


class Reader(CalibrationDataReader):
    def __init__(self, name, batches):
        self.it = iter([{name: b} for b in batches])

    def get_next(self):
        return next(self.it, None)


def qdq_graph(tmp_path, activation=QuantType.QUInt8, per_channel=True, arch="cnn", seed=0, linear="gemm"):
    """quantize_static's QDQ graph of a small float graph, calibrated on random images."""
    model = small_cnn(seed) if arch == "cnn" else small_mlp(seed)
    src = save(onnx_export.float_to_onnx(model, ST, linear), tmp_path / "float.onnx")
    shape = model.input_shape if arch == "cnn" else (60,)
    info = {"input_shape": shape, "input_range": "0-1"}
    calib = [oracle.graph_input(images(16, shape), info) for _ in range(4)]
    dst = str(tmp_path / "qdq.onnx")
    quantize_static(src, dst, Reader("input", calib), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=activation, weight_type=QuantType.QInt8)
    return dst, shape


@pytest.mark.parametrize("activation,per_channel", [(QuantType.QUInt8, True), (QuantType.QInt8, False)],
                         ids=["uint8-per-channel", "int8-per-tensor"])
@pytest.mark.parametrize("arch", ["cnn", "mlp"])
def test_qdq_graph_imports_to_a_quantized_model(tmp_path, arch, activation, per_channel):
    """The graph's int8 weights are kept; hidden scales map to mult/shift; ReLU inferred from the
    activation's zero point; the result follows ONNX Runtime's int8 result to within its
    rounding (the import reports each layer's mapping error)."""
    src, shape = qdq_graph(tmp_path, activation, per_channel, arch)
    result = import_onnx(src, tmp_path / "q.npz")
    assert result.kind == "quantized"
    assert any("relative error max" in line for line in result.report)
    q = modelfile.load_quantized(tmp_path / "q.npz")
    graph_w = [numpy_helper.to_array(t) for t in onnx.load(src).graph.initializer
               if t.data_type == TensorProto.INT8 and len(t.dims) > 1]
    weighted = [l for l in q.layers if not isinstance(l, MaxPool2D)]
    assert len(graph_w) == len(weighted)
    for layer, w in zip(weighted[:-1], graph_w):      # hidden layers keep the graph's int8 weights
        assert np.array_equal(layer.weights, w if w.shape == layer.weights.shape else w.T)
    imgs = images(300, shape)
    logits, output = oracle.run_onnx(q.meta["onnx"], imgs)
    f = oracle.figures_of(q.meta["onnx"], q.logits(imgs), q.predict(imgs), logits, output)
    assert f["onnx_top1_agreement"] >= 0.95, f
    span = np.ptp(logits, axis=1).mean()
    assert f["onnx_max_logit_diff"] < 0.25 * span, (f, span)


def test_qdq_last_layer_per_tensor_is_kept_exactly(tmp_path):
    """Per-tensor weights: the logits layer needs no requantization, its weights are the graph's."""
    src, _ = qdq_graph(tmp_path, QuantType.QInt8, False)
    result = import_onnx(src, tmp_path / "q.npz")
    assert not any("requantized" in line for line in result.report)
    src, _ = qdq_graph(tmp_path, QuantType.QUInt8, True)
    result = import_onnx(src, tmp_path / "q2.npz")
    assert any("logits layer requantized to its largest" in line for line in result.report)


def _conv_graph(**conv_attrs):
    """input -> Conv -> Relu -> MaxPool -> Flatten -> Gemm, with the Conv's attributes replaced
    (pool=None: no MaxPool)."""
    attrs = dict(kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 0, 0])
    attrs.update(conv_attrs)
    pool = attrs.pop("pool", dict(kernel_shape=[2, 2], strides=[2, 2]))
    w = numpy_helper.from_array(RNG.standard_normal((2, 1, 2, 2)).astype(np.float32), "cw")
    fc = numpy_helper.from_array(RNG.standard_normal((3, 2 * (4 * 4 if pool else 8 * 8))).astype(np.float32), "fw")
    nodes = [helper.make_node("Conv", ["x", "cw"], ["c"], name="conv1", **attrs),
             helper.make_node("Relu", ["c"], ["r"], name="relu1"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool1", **pool) if pool else
             helper.make_node("Identity", ["r"], ["p"], name="nopool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1),
             helper.make_node("Gemm", ["f", "fw"], ["y"], name="fc1", transB=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 9, 9])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], [w, fc])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _replace(model, name, node):
    i = [n.name for n in model.graph.node].index(name)
    model.graph.node.remove(model.graph.node[i])
    model.graph.node.insert(i, node)
    return model


def _dynamic_h():
    m = _conv_graph()
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    return m


REFUSALS = {
    "stride": (lambda: _conv_graph(strides=[2, 2]), r"node 'conv1' \(Conv\): strides \[2, 2\]"),
    "padding": (lambda: _conv_graph(pads=[1, 1, 1, 1]), r"node 'conv1' \(Conv\): pads \[1, 1, 1, 1\]"),
    "pool3x3": (lambda: _conv_graph(pool=dict(kernel_shape=[3, 3], strides=[2, 2])),
                r"node 'pool1' \(MaxPool\): kernel_shape \[3, 3\]"),
    "grouped": (lambda: _conv_graph(group=2), r"node 'conv1' \(Conv\): "),
    "avgpool": (lambda: _replace(_conv_graph(), "pool1", helper.make_node(
        "AveragePool", ["r"], ["p"], name="pool1", kernel_shape=[2, 2], strides=[2, 2])),
        r"node 'pool1' \(AveragePool\): this op type is not supported"),
    "sigmoid": (lambda: _replace(_conv_graph(), "relu1", helper.make_node("Sigmoid", ["c"], ["r"], name="act")),
                r"node 'act' \(Sigmoid\): this op type is not supported"),
    "no-relu": (lambda: _replace(_conv_graph(), "relu1", helper.make_node("Identity", ["c"], ["r"], name="id")),
                r"node 'conv1' \(Conv\): a hidden layer without a ReLU"),
    "dynamic-height": (_dynamic_h, r"graph input 'x' dimension 2 is dynamic \('height'\)"),
    "reshape-not-flatten": (lambda: _replace(_add_shape(_conv_graph()), "flat", helper.make_node(
        "Reshape", ["p", "shape"], ["f"], name="reshape1")), r"node 'reshape1' \(Reshape\): reshapes"),
}


def _add_shape(m):
    m.graph.initializer.append(numpy_helper.from_array(np.array([-1, 2, 16], np.int64), "shape"))
    return m


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_name_their_node_before_writing(tmp_path, case):
    build, message = REFUSALS[case]
    src = save(build(), tmp_path / f"{case}.onnx")
    with pytest.raises(ImportRefused, match=message):
        import_onnx(src, tmp_path / "out.npz", input_range="0-1")
    assert not (tmp_path / "out.npz").exists()


def test_blocks_of_other_kernels_and_without_pool(tmp_path):
    """A conv without a pool and a different kernel per block: the float model file holds them,
    computes what ONNX Runtime computes, and quantizes to an integer model of the same blocks."""
    m = CNN((1, 12, 11), (3, 4, 2), 2, (5,), kernels=(3, 1, 2), pools=(False, True, False), seed=5)
    m.conv_b = [np.full(b.shape, 0.05, np.float32) for b in m.conv_b]
    src = save(onnx_export.float_to_onnx(m, ST), tmp_path / "m.onnx")
    assert [n.op_type for n in onnx.load(src).graph.node].count("MaxPool") == 1
    import_onnx(src, tmp_path / "float.npz")
    fmodel, st, meta = modelfile.load_float(tmp_path / "float.npz")
    assert fmodel.config()["kernels"] == [3, 1, 2] and fmodel.config()["pools"] == [False, True, False]
    imgs = images(40, m.input_shape)
    logits, _ = oracle.run_onnx(meta["onnx"], imgs)
    np.testing.assert_allclose(fmodel.logits(st(imgs)), logits, rtol=1e-4, atol=1e-4)
    from nnhil.training.quantize import quantize
    q = quantize(fmodel, st, images(200, m.input_shape))
    assert [type(l).__name__ for l in q.layers] == ["Conv2D", "Conv2D", "MaxPool2D", "Conv2D", "Dense"]
    assert [l.kernel for l in q.layers if hasattr(l, "kernel")] == [3, 1, 2]
    assert (q.predict(imgs) == logits.argmax(1)).mean() >= 0.8


def test_default_cnn_config_is_unchanged():
    """The default architecture's description (and so its model files) has no new keys."""
    assert CNN().config() == {"input_shape": [1, 28, 28], "channels": [16, 32], "kernel": 2, "dense": [10]}


def test_import_cli_reports_and_refuses(tmp_path, capsys):
    src = save(onnx_export.float_to_onnx(small_mlp(), ST), tmp_path / "m.onnx")
    assert cli.main(["import", src, "--out", str(tmp_path / "f.npz")]) == 0
    assert "the standardiser is (pixel / 255 - 0.286) / 0.353" in capsys.readouterr().out
    bad = save(_conv_graph(strides=[2, 2]), tmp_path / "bad.onnx")
    assert cli.main(["import", bad, "--out", str(tmp_path / "g.npz"), "--input-range", "0-1"]) == 2
    assert "node 'conv1' (Conv): strides [2, 2]" in capsys.readouterr().err
    assert not (tmp_path / "g.npz").exists()
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    assert cli.main(["import", str(tmp_path / "junk.onnx"), "--out", str(tmp_path / "h.npz")]) == 2
    assert "not a readable ONNX file" in capsys.readouterr().err


def test_oracle_refuses_a_changed_onnx_file(tmp_path):
    src = save(onnx_export.float_to_onnx(small_mlp(), ST), tmp_path / "m.onnx")
    import_onnx(src, tmp_path / "f.npz")
    _, _, meta = modelfile.load_float(tmp_path / "f.npz")
    with open(src, "ab") as f:
        f.write(b"\0")
    with pytest.raises(oracle.OracleUnavailable, match="changed since the import"):
        oracle.run_onnx(meta["onnx"], images(2, (60,)))


def test_blocks_without_pool_backward_matches_numerical():
    """The CNN extension trains too: its gradients with a pool-less block and mixed kernels."""
    from nnhil.training.mlp import cross_entropy
    rng = np.random.default_rng(0)
    model = CNN((2, 9, 8), (3, 2), 2, (4,), kernels=(2, 3), pools=(False, True), seed=1)
    model.conv_w = [w.astype(np.float64) for w in model.conv_w]
    model.conv_b = [b.astype(np.float64) + 0.1 for b in model.conv_b]
    model.dense_w = [w.astype(np.float64) for w in model.dense_w]
    model.dense_b = [b.astype(np.float64) + 0.05 for b in model.dense_b]
    x = rng.standard_normal((3, 2 * 9 * 8))
    targets = np.eye(4)[rng.integers(0, 4, 3)] * 0.9 + 0.025

    def loss():
        return cross_entropy(model.forward(x)[0], targets)[0]

    logits, cache = model.forward(x)
    gw, gb = model.backward(cross_entropy(logits, targets)[1].astype(np.float64), cache)
    for p, g in zip(model.params, gw + gb):
        eps, num = 1e-6, np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            hi = loss()
            p[i] = old - eps
            num[i] = (hi - loss()) / (2 * eps)
            p[i] = old
        np.testing.assert_allclose(g, num, rtol=1e-4, atol=1e-7)


def test_qdq_matmul_then_add_is_refused_with_the_way_out(tmp_path):
    """quantize_static quantizes a MatMul's output before its bias Add: an 8-bit intermediate
    the format has not; the refusal names the Add and says what to export instead."""
    src, _ = qdq_graph(tmp_path, arch="mlp", linear="matmul")
    with pytest.raises(ImportRefused, match=r"node 'add_\d+' \(Add\): adds the bias after node 'matmul_\d+' "
                                            r"\(MatMul\)'s output was quantized.*export the Linear as Gemm"):
        import_onnx(src, tmp_path / "q.npz")
    assert not (tmp_path / "q.npz").exists()


def test_qdq_hidden_layer_without_relu_is_refused(tmp_path):
    """Without a ReLU the quantizer gives the hidden activation a non-zero zero point: it can be
    negative, which nnhil's uint8 activations cannot hold; the refusal names the layer."""
    g = onnx_export.float_to_onnx(small_mlp(), ST)
    relu = next(n for n in g.graph.node if n.op_type == "Relu")
    for n in g.graph.node:
        if relu.output[0] in n.input:
            n.input[list(n.input).index(relu.output[0])] = relu.input[0]
    g.graph.node.remove(relu)
    src = save(g, tmp_path / "norelu.onnx")
    info = {"input_shape": (60,), "input_range": "0-1"}
    dst = str(tmp_path / "q.onnx")
    quantize_static(src, dst, Reader("input", [oracle.graph_input(images(16, (60,)), info) for _ in range(4)]),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    with pytest.raises(ImportRefused, match=r"node 'gemm_\d+' \(Gemm\): its output is uint8 with zero point [1-9]"):
        import_onnx(dst, tmp_path / "q.npz")
    assert not (tmp_path / "q.npz").exists()
