"""Integer reference model, quantizer and model files."""
import json
import zipfile

import numpy as np
import pytest

from nnhil.training import fixedpoint as fx, modelfile
from nnhil.training.intmodel import Dense, IntModel
from nnhil.training.mlp import MLP
from nnhil.training.quantize import quantize, quantize_weights
from nnhil.training.train import Standardizer


def dense(w, b, mult=None, shift=None, output=fx.OUTPUT_U8):
    w = np.asarray(w, np.int8)
    n = w.shape[0]
    mult = np.full(n, 1 if mult is None else mult, np.uint16)
    shift = np.full(n, 1 if shift is None else shift, np.uint8)
    return Dense(w, np.asarray(b, np.int32), mult, shift, output)


def reference_loop(model, image):
    """Scalar, loop-based evaluation of the numeric spec, independent of NumPy matmuls."""
    x = [int(v) for v in image.ravel()]
    for layer in model.layers:
        out = []
        for j in range(layer.n_out):
            acc = int(layer.bias[j]) + sum(int(w) * v for w, v in zip(layer.weights[j], x))
            assert fx.ACC_MIN <= acc <= fx.ACC_MAX
            if layer.output == fx.OUTPUT_I32:
                out.append(acc)
            else:
                s = int(layer.shift[j])
                out.append(min(max((acc * int(layer.mult[j]) + (1 << (s - 1))) >> s, 0), 255))
        x = out
    return x


def random_model(rng, sizes, extreme=False):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        lo = -128 if extreme else -127
        w = rng.integers(lo, 128, (n_out, n_in)).astype(np.int8)
        if extreme:
            w[0] = 127
            w[-1] = -128
        b = rng.integers(-2**15, 2**15, n_out).astype(np.int32)
        last = i == len(sizes) - 2
        layers.append(Dense(w, b, rng.integers(1, 2**16, n_out).astype(np.uint16),
                            rng.integers(8, 24, n_out).astype(np.uint8),
                            fx.OUTPUT_I32 if last else fx.OUTPUT_U8))
    return IntModel(layers, (sizes[0],))


@pytest.mark.parametrize("sizes", [(1, 1), (13, 7, 3), (5, 1, 1), (30, 17, 9, 10)])
def test_vectorised_model_equals_scalar_spec(sizes):
    rng = np.random.default_rng(sum(sizes))
    model = random_model(rng, sizes, extreme=True)
    images = rng.integers(0, 256, (6, sizes[0])).astype(np.uint8)
    images[0] = 255
    images[1] = 0
    got = model.logits(images)
    for img, row in zip(images, got):
        assert row.tolist() == reference_loop(model, img)


def test_relu_zeroes_negative_accumulators_and_saturates():
    layer = dense([[1, -1], [127, 127]], [0, 0], mult=1, shift=1)
    model = IntModel([layer, dense([[1, 1]], [0], output=fx.OUTPUT_I32)], (2,))
    hidden, logits = model.activations(np.array([[0, 255], [255, 255]], np.uint8))
    assert hidden.tolist() == [[0, 255], [0, 255]]
    assert logits.tolist() == [[255], [255]]


def test_argmax_ties_take_lowest_index():
    model = IntModel([dense([[1], [1], [0]], [5, 5, 5], output=fx.OUTPUT_I32)], (1,))
    assert model.predict(np.array([[0], [3]], np.uint8)).tolist() == [0, 0]


def test_model_rejects_inconsistent_layers():
    with pytest.raises(ValueError, match="do not chain"):
        IntModel([dense(np.ones((3, 4)), [0] * 3), dense(np.ones((2, 5)), [0, 0], output="i32")], (4,))
    with pytest.raises(ValueError, match="hidden layer must output 'u8'"):
        IntModel([dense(np.ones((3, 4)), [0] * 3, output="i32"),
                  dense(np.ones((2, 3)), [0, 0], output="i32")], (4,))
    with pytest.raises(ValueError, match="last layer must output 'i32'"):
        IntModel([dense(np.ones((3, 4)), [0] * 3)], (4,))
    with pytest.raises(ValueError, match="shifts must lie"):
        IntModel([dense(np.ones((3, 4)), [0] * 3, shift=0), dense(np.ones((2, 3)), [0, 0], output="i32")], (4,))
    with pytest.raises(ValueError, match="32-bit range"):
        IntModel([dense(np.ones((1, 4)), [2**31 - 100], output="i32")], (4,))
    with pytest.raises(ValueError, match="at least one layer"):
        IntModel([], (4,))
    with pytest.raises(TypeError, match="uint8"):
        IntModel([dense(np.ones((1, 4)), [0], output="i32")], (4,)).logits(np.zeros((1, 4)))


def test_weight_quantization_is_symmetric_and_saturating():
    w = np.array([[1.0, -0.5], [-1.0, 0.25], [0.5, 0.0]])
    q, scale = quantize_weights(w, per_neuron=True)
    assert q.tolist() == [[127, -127, 64], [-127, 64, 0]]
    np.testing.assert_allclose(scale, [1 / 127, 0.5 / 127])
    q, _ = quantize_weights(np.zeros((3, 2)), per_neuron=True)
    assert not q.any()


def _tiny_float_model(seed=0):
    rng = np.random.default_rng(seed)
    model = MLP((784, 16, 10), seed=seed)
    model.biases = [rng.normal(0, 0.1, b.shape).astype(np.float32) for b in model.biases]
    images = rng.integers(0, 256, (400, 28, 28)).astype(np.uint8)
    images[:, :10] = 0                      # some structure: dark rows, like real images
    return model, Standardizer.fit(images), images


def test_quantized_model_tracks_float_model():
    model, st, images = _tiny_float_model()
    q = quantize(model, st, images)
    float_logits = model.logits(st(images))
    assert (q.predict(images) == float_logits.argmax(1)).mean() > 0.9
    scale = np.abs(float_logits).max() / np.abs(q.logits(images)).max()
    assert np.corrcoef(float_logits.ravel(), q.logits(images).ravel() * scale)[0, 1] > 0.99


def test_model_file_round_trip(tmp_path):
    model, st, images = _tiny_float_model()
    q = quantize(model, st, images, classes=[str(i) for i in range(10)], meta={"note": "x"})
    digest = modelfile.save_quantized(tmp_path / "q.npz", q)
    back = modelfile.load_quantized(tmp_path / "q.npz")
    assert back.hash == digest and back.classes == q.classes and back.meta["note"] == "x"
    for a, b in zip(q.layers, back.layers):
        for name in ("weights", "bias", "mult", "shift"):
            assert np.array_equal(getattr(a, name), getattr(b, name))
            assert getattr(a, name).dtype == getattr(b, name).dtype
    assert np.array_equal(back.logits(images), q.logits(images))
    modelfile.save_float(tmp_path / "f.npz", model, st, {"k": 1})
    fm, fst, meta = modelfile.load_float(tmp_path / "f.npz")
    assert np.array_equal(fm.logits(fst(images)), model.logits(st(images))) and meta == {"k": 1}


@pytest.fixture
def qfile(tmp_path):
    model, st, images = _tiny_float_model()
    path = tmp_path / "q.npz"
    modelfile.save_quantized(path, quantize(model, st, images))
    return path


def _rewrite(path, manifest_edit=None, array_edit=None):
    """Rewrite a model file with an edited manifest or array, keeping everything else."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    manifest = json.loads(members["manifest.json"])
    if manifest_edit:
        manifest_edit(manifest)
    if array_edit:
        name, fn = array_edit
        import io
        arr = np.lib.format.read_array(io.BytesIO(members[name]))
        buf = io.BytesIO()
        np.lib.format.write_array(buf, fn(arr.copy()))
        members[name] = buf.getvalue()
    members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


def test_truncated_model_file(qfile):
    qfile.write_bytes(qfile.read_bytes()[: qfile.stat().st_size // 2])
    with pytest.raises(modelfile.ModelFileError, match="corrupt or truncated"):
        modelfile.load_quantized(qfile)


def test_missing_model_file(tmp_path):
    with pytest.raises(modelfile.ModelFileError, match="no such model file.*nnhil train"):
        modelfile.load_quantized(tmp_path / "nope.npz")


def test_not_a_zip(tmp_path):
    (tmp_path / "x.npz").write_text("hello")
    with pytest.raises(modelfile.ModelFileError, match="corrupt or truncated"):
        modelfile.load_quantized(tmp_path / "x.npz")


def test_corrupted_array_detected(qfile):
    _rewrite(qfile, array_edit=("layer0.weights.npy", lambda a: a ^ np.int8(1)))
    with pytest.raises(modelfile.ModelFileError, match="layer0.weights is corrupt"):
        modelfile.load_quantized(qfile)


def test_wrong_file_version(qfile):
    _rewrite(qfile, lambda m: m.update(version=99))
    with pytest.raises(modelfile.ModelFileError, match="version 99"):
        modelfile.load_quantized(qfile)


def test_wrong_numeric_format(qfile):
    _rewrite(qfile, lambda m: m.update(numeric_format=fx.FORMAT_VERSION + 1))
    with pytest.raises(modelfile.ModelFileError, match="numeric format"):
        modelfile.load_quantized(qfile)


def test_manifest_shape_mismatch(qfile):
    def edit(m):
        m["layers"][0]["n_out"] = 17
    _rewrite(qfile, edit)
    with pytest.raises(modelfile.ModelFileError, match="manifest says 17x784"):
        modelfile.load_quantized(qfile)


def test_array_dtype_mismatch(qfile):
    def edit(m):
        m["arrays"]["layer0.weights"]["dtype"] = "<i2"
    _rewrite(qfile, edit)
    with pytest.raises(modelfile.ModelFileError, match="manifest says <i2"):
        modelfile.load_quantized(qfile)


def test_unknown_layer_type(qfile):
    def edit(m):
        m["layers"][0]["type"] = "lstm"
    _rewrite(qfile, edit)
    with pytest.raises(modelfile.ModelFileError, match="unknown type 'lstm'"):
        modelfile.load_quantized(qfile)


def test_kind_mismatch(qfile):
    with pytest.raises(modelfile.ModelFileError, match="expected a float one"):
        modelfile.load_float(qfile)


def test_float_file_with_nan(tmp_path):
    model, st, _ = _tiny_float_model()
    model.weights[1][0, 0] = np.nan
    modelfile.save_float(tmp_path / "f.npz", model, st)
    with pytest.raises(modelfile.ModelFileError, match="layer 1 holds NaN"):
        modelfile.load_float(tmp_path / "f.npz")


def test_float_file_shapes_that_do_not_chain(tmp_path):
    model, st, _ = _tiny_float_model()
    modelfile.save_float(tmp_path / "f.npz", model, st)
    _rewrite(tmp_path / "f.npz", lambda m: m.update(sizes=[784, 17, 10]))
    with pytest.raises(modelfile.ModelFileError, match="do not chain"):
        modelfile.load_float(tmp_path / "f.npz")
