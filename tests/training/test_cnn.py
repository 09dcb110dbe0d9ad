"""The NumPy CNN (gradients, pooling), its integer twin (conv/pool spec), quantizer and files."""
import dataclasses
import json
import zipfile

import numpy as np
import pytest

from nnhil.training import fixedpoint as fx, modelfile, workflow
from nnhil.training.cnn import (CNN, CNNConfig, conv_backward, conv_forward, pool_backward, pool_forward)
from nnhil.training.intmodel import Conv2D, Dense, IntModel, MaxPool2D
from nnhil.training.quantize import fold_standardizer_cnn, quantize
from nnhil.training.train import Standardizer, train


# Float CNN: gradients -------------------------------------------------------------------------
def numerical_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        hi = f()
        x[i] = old - eps
        lo = f()
        x[i] = old
        g[i] = (hi - lo) / (2 * eps)
    return g


@pytest.mark.parametrize("c_in,c_out,k,h", [(1, 1, 2, 5), (1, 4, 3, 6), (3, 2, 2, 4), (2, 3, 1, 3)])
def test_conv_gradients_match_numerical(c_in, c_out, k, h):
    rng = np.random.default_rng(c_in * 10 + c_out)
    x = rng.standard_normal((2, h, h + 1, c_in))
    w = rng.standard_normal((c_out, c_in, k, k))
    b = rng.standard_normal(c_out)
    r = rng.standard_normal((2, h - k + 1, h + 2 - k, c_out))     # a random linear loss
    loss = lambda: float((conv_forward(x, w, b)[0] * r).sum())  # noqa: E731
    out, cols = conv_forward(x, w, b)
    dx, dw, db = conv_backward(r, cols, x.shape, w)
    np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, numerical_grad(loss, w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, numerical_grad(loss, b), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("h,w", [(4, 4), (5, 7), (3, 2)])
def test_pool_gradients_match_numerical(h, w):
    rng = np.random.default_rng(h * w)
    x = rng.permutation(2 * h * w * 3).reshape(2, h, w, 3).astype(np.float64) * 0.1  # no ties
    r = rng.standard_normal((2, h // 2, w // 2, 3))
    loss = lambda: float((pool_forward(x)[0] * r).sum())  # noqa: E731
    _, arg = pool_forward(x)
    np.testing.assert_allclose(pool_backward(r, arg, x.shape), numerical_grad(loss, x, 1e-3), atol=1e-9)


def _float64(model):
    model.conv_w = [w.astype(np.float64) for w in model.conv_w]
    model.conv_b = [b.astype(np.float64) + 0.1 for b in model.conv_b]
    model.dense_w = [w.astype(np.float64) for w in model.dense_w]
    model.dense_b = [b.astype(np.float64) + 0.05 for b in model.dense_b]
    return model


@pytest.mark.parametrize("shape,channels,k,dense", [((1, 8, 8), (2, 3), 2, (4,)),
                                                      ((2, 9, 7), (3,), 3, (5, 3))])
def test_whole_cnn_backward_matches_numerical(shape, channels, k, dense):
    from nnhil.training.mlp import cross_entropy
    rng = np.random.default_rng(0)
    model = _float64(CNN(shape, channels, k, dense, seed=1))
    x = rng.standard_normal((3, int(np.prod(shape))))
    targets = np.eye(dense[-1])[rng.integers(0, dense[-1], 3)] * 0.9 + 0.1 / dense[-1]

    def loss():
        return cross_entropy(model.forward(x)[0], targets)[0]

    logits, cache = model.forward(x)
    _, dlogits = cross_entropy(logits, targets)
    gw, gb = model.backward(dlogits.astype(np.float64), cache)
    for p, g in zip(model.params, gw + gb):
        np.testing.assert_allclose(g, numerical_grad(loss, p), rtol=1e-4, atol=1e-7)


def test_dropout_gradient_uses_the_same_mask():
    model = _float64(CNN((1, 6, 6), (2,), 2, (3,), seed=2))
    x = np.random.default_rng(1).standard_normal((2, 36))
    logits, cache = model.forward(x, dropout=0.5, rng=np.random.default_rng(5))
    r = np.random.default_rng(3).standard_normal(logits.shape)
    gw, gb = model.backward(r, cache)

    def loss():
        return float((model.forward(x, dropout=0.5, rng=np.random.default_rng(5))[0] * r).sum())
    for p, g in zip(model.params, gw + gb):
        np.testing.assert_allclose(g, numerical_grad(loss, p), rtol=1e-5, atol=1e-8)


def test_pool_odd_sizes_and_ties():
    x = np.array([[1, 5, 5, 0, 9],
                  [5, 2, 5, 5, 9],
                  [0, 0, 7, 7, 9]], np.float64)[None, :, :, None]
    out, arg = pool_forward(x)
    assert out[0, :, :, 0].tolist() == [[5, 5]]         # floor: 1x2 out of 3x5
    d = pool_backward(np.ones_like(out), arg, x.shape)[0, :, :, 0]
    # each output's gradient goes to exactly one input: the first maximum in row-major order
    assert d.tolist() == [[0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    q = MaxPool2D((1, 3, 5))(x[..., 0].astype(np.uint8)[:, None])
    assert q.shape == (1, 1, 1, 2) and q.ravel().tolist() == [5, 5]


def test_float_conv_matches_a_loop_reference():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 5, 6, 3))
    w = rng.standard_normal((4, 3, 2, 2))
    b = rng.standard_normal(4)
    out, _ = conv_forward(x, w, b)
    ref = np.zeros((2, 4, 5, 4))
    for n in range(2):
        for o in range(4):
            for r in range(4):
                for c in range(5):
                    ref[n, r, c, o] = b[o] + (w[o] * x[n, r:r + 2, c:c + 2].transpose(2, 0, 1)).sum()
    np.testing.assert_allclose(out, ref, atol=1e-12)


def test_training_is_deterministic_and_learns():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.standard_normal((300, 1, 8, 8)).astype(np.float32) * 0.3
    x[np.arange(300), 0, y * 2, 2:6] += 2.0                 # a class-dependent bar
    x = x.reshape(300, -1)
    cfg = CNNConfig(layers=(3,), channels=(4, 4), kernel=2, input_shape=(1, 8, 8), epochs=4,
                    batch=32, lr=0.05, val_size=0)
    a, ha = train(cfg, x[:250], y[:250], x[250:], y[250:])
    b, hb = train(cfg, x[:250], y[:250], x[250:], y[250:])
    for p, q in zip(a.params, b.params):
        assert np.array_equal(p, q)
    assert ha.loss == hb.loss and max(ha.val_acc) > 0.9


# Integer conv / pool ------------------------------------------------------------------------
def scalar_conv(layer, x):
    """Scalar loops over the conv spec in fixedpoint.py, in Python ints."""
    c, h, w = layer.in_shape
    k = layer.kernel
    out = []
    for o in range(layer.c_out):
        plane = []
        for r in range(h - k + 1):
            row = []
            for q in range(w - k + 1):
                acc = int(layer.bias[o])
                for i in range(c):
                    for dy in range(k):
                        for dx in range(k):
                            acc += int(layer.weights[o, i, dy, dx]) * int(x[i][r + dy][q + dx])
                assert fx.ACC_MIN <= acc <= fx.ACC_MAX
                if layer.output == fx.OUTPUT_U8:
                    s = int(layer.shift[o])
                    acc = min(max((acc * int(layer.mult[o]) + (1 << (s - 1))) >> s, 0), 255)
                row.append(acc)
            plane.append(row)
        out.append(plane)
    return out


def scalar_pool(x):
    return [[[max(p[2 * r][2 * q], p[2 * r][2 * q + 1], p[2 * r + 1][2 * q], p[2 * r + 1][2 * q + 1])
              for q in range(len(p[0]) // 2)] for r in range(len(p) // 2)] for p in x]


def scalar_model(model, image):
    x = np.asarray(image).reshape((1,) * (3 - len(model.input_shape)) + model.input_shape).tolist()
    for layer in model.layers:
        if isinstance(layer, Conv2D):
            x = scalar_conv(layer, x)
        elif isinstance(layer, MaxPool2D):
            x = scalar_pool(x)
        else:
            flat = np.asarray(x).ravel().tolist()
            x = []
            for j in range(layer.n_out):
                acc = int(layer.bias[j]) + sum(int(w) * v for w, v in zip(layer.weights[j], flat))
                if layer.output == fx.OUTPUT_U8:
                    s = int(layer.shift[j])
                    acc = min(max((acc * int(layer.mult[j]) + (1 << (s - 1))) >> s, 0), 255)
                x.append(acc)
    return x


def random_conv(rng, in_shape, c_out, k, output=fx.OUTPUT_U8, extreme=True):
    w = rng.integers(-128 if extreme else -127, 128, (c_out, in_shape[0], k, k)).astype(np.int8)
    if extreme:
        w[0] = 127
        w[-1] = -128
    return Conv2D(w, rng.integers(-2**14, 2**14, c_out).astype(np.int32),
                  rng.integers(1, 2**16, c_out).astype(np.uint16),
                  rng.integers(10, 20, c_out).astype(np.uint8), output, in_shape)


@pytest.mark.parametrize("in_shape,c_out,k", [((1, 5, 5), 1, 2), ((1, 6, 7), 5, 3),
                                               ((4, 4, 5), 3, 2), ((3, 3, 3), 2, 1)])
def test_integer_conv_equals_scalar_spec(in_shape, c_out, k):
    rng = np.random.default_rng(sum(in_shape) + c_out + k)
    layer = random_conv(rng, in_shape, c_out, k)
    layer.validate(0)
    x = rng.integers(0, 256, (4,) + in_shape).astype(np.uint8)
    x[0] = 255
    x[1] = 0
    got = layer(x)
    assert got.dtype == np.uint8 and got.shape == (4,) + layer.shape_out
    for img, row in zip(x, got):
        assert row.tolist() == scalar_conv(layer, img.tolist())
    out = dataclasses.replace(layer, output=fx.OUTPUT_I32)(x)     # raw accumulators, signed
    assert out.dtype == np.int32 and (out < 0).any()


def test_integer_conv_saturates_and_zeroes_negatives():
    w = np.zeros((2, 1, 2, 2), np.int8)
    w[0] = 127
    w[1] = -127
    layer = Conv2D(w, np.array([0, 0], np.int32), np.array([1, 1], np.uint16),
                   np.array([1, 1], np.uint8), fx.OUTPUT_U8, (1, 3, 3))
    y = layer(np.full((1, 1, 3, 3), 200, np.uint8))
    assert (y[0, 0] == 255).all() and (y[0, 1] == 0).all()


def test_pool_commutes_with_requantization():
    rng = np.random.default_rng(7)
    acc = rng.integers(-2**20, 2**20, (50, 3, 6, 5))
    acc[:, :, ::2] = acc[:, :, 1::2][:, :, :3]            # plenty of ties
    mult = rng.integers(0, 2**16, 3).reshape(3, 1, 1)
    shift = rng.integers(1, 30, 3).reshape(3, 1, 1)
    pool = MaxPool2D((3, 6, 5))
    pooled_acc = acc[:, :, :6, :4].reshape(50, 3, 3, 2, 2, 2).max(axis=(3, 5))
    assert np.array_equal(pool(fx.requantize(acc, mult, shift)), fx.requantize(pooled_acc, mult, shift))


def small_int_cnn(rng, extreme=True):
    conv1 = random_conv(rng, (1, 9, 9), 3, 2, extreme=extreme)
    pool1 = MaxPool2D(conv1.shape_out)                        # (3, 4, 4)
    conv2 = random_conv(rng, pool1.shape_out, 4, 2, extreme=extreme)
    pool2 = MaxPool2D(conv2.shape_out)                        # (4, 1, 1)
    dense = Dense(rng.integers(-127, 128, (5, pool2.n_out)).astype(np.int8),
                  rng.integers(-1000, 1000, 5).astype(np.int32), np.zeros(5, np.uint16),
                  np.zeros(5, np.uint8), fx.OUTPUT_I32)
    return IntModel([conv1, pool1, conv2, pool2, dense], (9, 9))


def test_integer_cnn_equals_scalar_spec():
    rng = np.random.default_rng(11)
    model = small_int_cnn(rng)
    images = rng.integers(0, 256, (5, 9, 9)).astype(np.uint8)
    images[0] = 255
    acts = model.activations(images)
    assert [a.shape[1:] for a in acts] == [(3, 8, 8), (3, 4, 4), (4, 3, 3), (4, 1, 1), (5,)]
    for img, row in zip(images, acts[-1]):
        assert row.tolist() == scalar_model(model, img)
    assert model.n_in == 81 and model.n_out == 5
    assert model.macs == 8 * 8 * 3 * 4 + 3 * 3 * 4 * 12 + 4 * 5


def test_integer_cnn_rejects_bad_shapes():
    rng = np.random.default_rng(1)
    c = random_conv(rng, (1, 9, 9), 3, 2)
    head = lambda n: Dense(np.ones((2, n), np.int8), np.zeros(2, np.int32), np.zeros(2, np.uint16),  # noqa
                           np.zeros(2, np.uint8), fx.OUTPUT_I32)
    with pytest.raises(ValueError, match=r"takes a \(1, 9, 9\).*the model.s input_shape is \(1, 8, 8\)"):
        IntModel([c, MaxPool2D(c.shape_out), head(48)], (8, 8))
    with pytest.raises(ValueError, match="maxpool2d.*do not chain"):
        IntModel([c, MaxPool2D((3, 9, 9)), head(48)], (9, 9))
    with pytest.raises(ValueError, match="takes 50 inputs but the previous stage produces 48"):
        IntModel([c, MaxPool2D(c.shape_out), head(50)], (9, 9))
    with pytest.raises(ValueError, match="last layer must output 'i32'"):
        IntModel([c, MaxPool2D(c.shape_out)], (9, 9))
    with pytest.raises(ValueError, match="input channels"):
        IntModel([dataclasses.replace(c, in_shape=(2, 9, 9)), head(192)], (2, 9, 9))
    with pytest.raises(ValueError, match="does not fit"):
        random_conv(rng, (1, 2, 2), 1, 3).validate(0)
    with pytest.raises(ValueError, match="at least a 2x2"):
        MaxPool2D((1, 1, 4)).validate(0)
    with pytest.raises(ValueError, match="square kernel"):
        dataclasses.replace(c, weights=np.zeros((3, 1, 2, 3), np.int8)).validate(0)
    with pytest.raises(ValueError, match="32-bit range"):
        dataclasses.replace(c, bias=np.full(3, 2**31 - 10, np.int32)).validate(0)
    with pytest.raises(TypeError, match="uint8"):
        MaxPool2D((1, 2, 2))(np.zeros((1, 1, 2, 2), np.int32))


def test_full_size_integer_cnn_equals_scalar_spec(benchmark):
    """A 28x28 CNN with 3x3 kernels on a 1000-image batch (timed by pytest-benchmark, ~0.1 s on
    2 cores; compare runs with --benchmark-compare): the batch's last image equals the scalar spec."""
    rng = np.random.default_rng(2)
    conv1 = random_conv(rng, (1, 28, 28), 16, 3, extreme=False)
    pool1 = MaxPool2D(conv1.shape_out)
    conv2 = random_conv(rng, pool1.shape_out, 32, 3, extreme=False)
    pool2 = MaxPool2D(conv2.shape_out)
    dense = Dense(rng.integers(-127, 128, (10, pool2.n_out)).astype(np.int8), np.zeros(10, np.int32),
                  np.zeros(10, np.uint16), np.zeros(10, np.uint8), fx.OUTPUT_I32)
    model = IntModel([conv1, pool1, conv2, pool2, dense], (28, 28))
    images = rng.integers(0, 256, (1000, 28, 28)).astype(np.uint8)
    logits = benchmark.pedantic(model.logits, args=(images,), rounds=1, iterations=1)
    assert logits.shape == (1000, 10)
    assert logits[-1].tolist() == scalar_model(model, images[-1])


# Quantizer, files, workflow -------------------------------------------------------------------
def tiny_float_cnn(seed=0):
    rng = np.random.default_rng(seed)
    model = CNN((1, 28, 28), (4, 6), 3, (10,), seed=seed)
    model.conv_b = [rng.normal(0, 0.1, b.shape).astype(np.float32) for b in model.conv_b]
    model.dense_b = [rng.normal(0, 0.1, b.shape).astype(np.float32) for b in model.dense_b]
    images = rng.integers(0, 256, (300, 28, 28)).astype(np.uint8)
    images[:, :8] = 0
    return model, Standardizer.fit(images), images


def test_folded_standardizer_is_exact():
    model, st, images = tiny_float_cnn()
    conv_w, conv_b, dense_w, dense_b = fold_standardizer_cnn(model, st)
    raw = images[:20].reshape(20, 28, 28, 1).astype(np.float64)
    folded, _ = conv_forward(raw, conv_w[0], conv_b[0])
    std = st(images[:20]).astype(np.float64).reshape(20, 28, 28, 1)
    ref, _ = conv_forward(std, model.conv_w[0].astype(np.float64), model.conv_b[0].astype(np.float64))
    np.testing.assert_allclose(folded, ref, rtol=1e-5, atol=1e-5)


def test_quantized_cnn_tracks_float_cnn():
    model, st, images = tiny_float_cnn()
    q = quantize(model, st, images)                 # dispatches to quantize_cnn
    assert [type(layer).__name__ for layer in q.layers] == ["Conv2D", "MaxPool2D", "Conv2D", "MaxPool2D",
                                                             "Dense"]
    assert q.input_shape == (1, 28, 28) and q.macs == model.macs
    agree = (q.predict(images) == model.predict(st(images))).mean()
    assert agree >= 0.9
    c = np.corrcoef(q.logits(images).ravel(), model.logits(st(images)).ravel())[0, 1]
    assert c > 0.99


def test_cnn_model_files_round_trip(tmp_path):
    model, st, images = tiny_float_cnn()
    modelfile.save_float(tmp_path / "f.npz", model, st, {"dataset": "x"})
    m2, st2, meta = modelfile.load_float(tmp_path / "f.npz")
    assert isinstance(m2, CNN) and meta == {"dataset": "x"} and st2.mean == st.mean
    assert np.array_equal(m2.logits(st(images)), model.logits(st(images)))
    q = quantize(model, st, images)
    h = modelfile.save_quantized(tmp_path / "q.npz", q)
    q2 = modelfile.load_quantized(tmp_path / "q.npz")
    assert q2.hash == h and q2.input_shape == q.input_shape
    assert np.array_equal(q2.logits(images), q.logits(images))
    assert modelfile.save_quantized(tmp_path / "q2.npz", q2) == h


def _rewrite(src, dst, edit_manifest=None, edit_arrays=None):
    """Re-pack a model file after editing its manifest/arrays (keeping hashes consistent)."""
    manifest, arrays = modelfile._read(src)
    if edit_arrays:
        edit_arrays(arrays)
    if edit_manifest:
        edit_manifest(manifest)
    manifest = {k: v for k, v in manifest.items() if k not in ("arrays", "payload_sha256")}
    modelfile._write(dst, manifest, arrays)


@pytest.mark.parametrize("edit_manifest,edit_arrays,match", [
    (lambda m: m["layers"][0].update(kernel=2), None, "manifest says 4 channels of 2x2"),
    (lambda m: m["layers"][1].update(size=3), None, "only 2x2"),
    (lambda m: m["layers"][1].update(type="avgpool"), None, "unknown type 'avgpool'"),
    (lambda m: m["layers"][2].update(in_shape=[4, 12, 12]), None, "do not chain"),
    (lambda m: m["layers"][0].update(in_shape=[2, 28, 28]), None, "input channels"),
    (None, lambda a: a.update({"layer1.bias": np.zeros(4, np.int32)}), "max-pool but the file holds arrays"),
    (None, lambda a: a.update({"layer0.mult": np.zeros(4, np.int32)}), "mult is int32"),
    (None, lambda a: a.update({"layer2.bias": np.zeros(5, np.int32)}), r"bias has shape \(5,\)"),
    (None, lambda a: a.pop("layer2.shift"), "missing entry 'layer2.shift'"),
])
def test_rejected_cnn_files(tmp_path, edit_manifest, edit_arrays, match):
    model, st, images = tiny_float_cnn()
    modelfile.save_quantized(tmp_path / "q.npz", quantize(model, st, images))
    _rewrite(tmp_path / "q.npz", tmp_path / "bad.npz", edit_manifest, edit_arrays)
    with pytest.raises(modelfile.ModelFileError, match=match):
        modelfile.load_quantized(tmp_path / "bad.npz")


def test_rejected_float_cnn_files(tmp_path):
    model, st, _ = tiny_float_cnn()
    modelfile.save_float(tmp_path / "f.npz", model, st)
    _rewrite(tmp_path / "f.npz", tmp_path / "b1.npz", lambda m: m["cnn"].update(channels=[4, 7]))
    with pytest.raises(modelfile.ModelFileError, match="layer 1 has weights"):
        modelfile.load_float(tmp_path / "b1.npz")
    _rewrite(tmp_path / "f.npz", tmp_path / "b2.npz", lambda m: m["cnn"].update(pool=3))
    with pytest.raises(modelfile.ModelFileError, match="invalid CNN description"):
        modelfile.load_float(tmp_path / "b2.npz")
    _rewrite(tmp_path / "f.npz", tmp_path / "b3.npz", None,
             lambda a: a.update({"layer0.weights": np.full((4, 1, 3, 3), np.nan, np.float32)}))
    with pytest.raises(modelfile.ModelFileError, match="NaN"):
        modelfile.load_float(tmp_path / "b3.npz")
    _rewrite(tmp_path / "f.npz", tmp_path / "b4.npz", lambda m: m.update(arch="rnn"))
    with pytest.raises(modelfile.ModelFileError, match="unknown architecture 'rnn'"):
        modelfile.load_float(tmp_path / "b4.npz")


def test_mlp_manifest_is_unchanged(tmp_path):
    """MLP files keep exactly their manifest entries (no CNN keys leak in)."""
    from nnhil.training.mlp import MLP
    q = quantize(MLP((784, 8, 10)), Standardizer(0.3, 0.3), np.zeros((10, 28, 28), np.uint8))
    modelfile.save_quantized(tmp_path / "q.npz", q)
    with zipfile.ZipFile(tmp_path / "q.npz") as z:
        manifest = json.loads(z.read("manifest.json"))
    assert manifest["version"] == modelfile.FILE_VERSION and manifest["input_shape"] == [28, 28]
    assert [sorted(layer) for layer in manifest["layers"]] == [["n_in", "n_out", "output", "type"]] * 2


def test_train_cnn_workflow_end_to_end(fashion, tmp_path):
    small = workflow.Data(fashion.name, fashion.classes, tuple(a[:1500] for a in fashion.train),
                          tuple(a[:300] for a in fashion.val), tuple(a[:500] for a in fashion.test),
                          fashion.standardizer)
    m = workflow.train_cnn(small, tmp_path, channels=(4, 8), layers=(10,),
                            kernel=3, epochs=1)
    assert m["arch"] == "cnn" and m["channels"] == [4, 8] and m["test_images"] == 500
    assert m["float_test_accuracy"] > 0.5 and m["int_test_accuracy"] > 0.5
    assert m["macs"] == 26 * 26 * 4 * 9 + 11 * 11 * 8 * 36 + 200 * 10
    assert m["conv_weights"] == 4 * 9 + 8 * 4 * 9 and m["weights"] == m["conv_weights"] + 2000
    for name in ("float.npz", "quantized.npz", "metrics.json", "curves.png", "confusion.png", "samples.png"):
        assert (tmp_path / name).stat().st_size > 0
    cfg = CNNConfig(channels=(4, 8), layers=(10,), kernel=3, epochs=1)
    assert "cnn4-8-k3-10" in str(workflow.default_out_dir(cfg, "fashion-mnist"))
    assert workflow.config_hash(cfg, "x") != workflow.config_hash(CNNConfig(), "x")


# The real datasets ---------------------------------------------------------------------------
# Float test accuracy, by workflow.MODELS name: below the worst seed by more than the spread of
# every seed and kernel and the most two BLAS kernels moved one seed of any model (37 test images
# for a float result, the headline MLP's seed 2; docs/accuracy.md, tests/benchmarks/seed_table.py).
# Float / integer %, numpy 2.4.6, OpenBLAS 0.3.31 on one thread, AMD EPYC, 2026-12-07:
#   cnn:       SkylakeX seeds 0-4  91.82/91.86  91.76/91.79  91.88/91.93  91.81/91.83  91.65/91.63,
#              Haswell seed 0 91.55/91.49: worst 91.55, spread 33 images, so at most 90.85%: 90.8%
#   cnn-mnist: SkylakeX seeds 0-4  99.08  98.98  99.20  99.10  99.07 (float = integer), Haswell
#              seed 0 99.10: worst 98.98, spread 22 images, so at most 98.39%: 98.3%
TARGETS = {"cnn-mnist": 0.983, "cnn": 0.908}
MAX_QUANT_LOSS = 0.005      # integer below float: at most 2 test images at the seeds above


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_cnn_meets_accuracy_targets(trained, name):
    """The default CNN (the seed's 2x2 kernels) on the full test set, float and integer."""
    t = trained(name)
    fmodel, st, meta = modelfile.load_float(t.out_dir / "float.npz")
    assert meta["train_config"] == CNNConfig().to_dict()
    images, labels = t.data.test
    assert len(labels) == 10_000
    with workflow.pinned_blas():
        float_acc = float((fmodel.predict(st(images)) == labels).mean())
    int_acc = float((t.model.predict(images) == labels).mean())
    print(f"{name} on {t.data.name}: float {float_acc:.4f} integer {int_acc:.4f}")
    assert float_acc >= TARGETS[name]
    assert int_acc >= float_acc - MAX_QUANT_LOSS
    assert [type(l).__name__ for l in t.model.layers] == [
        "Conv2D", "MaxPool2D", "Conv2D", "MaxPool2D", "Dense", "Dense"]
    assert t.model.layers[0].kernel == 2


def test_an_h_w_input_shape_is_one_channel():
    """[H, W] is [1, H, W] for the float CNN and the integer model alike."""
    assert CNN((28, 28), (2,), 2, (3,)).input_shape == (1, 28, 28)
    conv = random_conv(np.random.default_rng(0), (1, 6, 6), 2, 3)
    dense = Dense(np.ones((3, 2 * 4 * 4), np.int8), np.zeros(3, np.int32), np.ones(3, np.uint16),
                  np.full(3, 8, np.uint8), fx.OUTPUT_I32)
    a, b = IntModel([conv, dense], (6, 6)), IntModel([conv, dense], (1, 6, 6))
    assert a.input_shape == b.input_shape == (1, 6, 6)
    x = np.random.default_rng(1).integers(0, 256, (3, 6, 6), dtype=np.uint8)
    np.testing.assert_array_equal(a.logits(x), b.logits(x[:, None]))
    with pytest.raises(ValueError, match=r"takes a \(1, 6, 6\) \(C, H, W\) input but "
                                         r"the model.s input_shape is \(1, 6, 7\)"):
        IntModel([conv, dense], (6, 7))
