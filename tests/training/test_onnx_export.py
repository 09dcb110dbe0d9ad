"""nnhil export: the integer ONNX graph, run by ONNX Runtime, gives IntModel.logits bit for bit,
with the worst-case values that saturate 16-bit pair sums in uint8 x int8 kernels."""
import numpy as np
import onnxruntime as ort
import pytest

from nnhil.host import cli
from nnhil.training import fixedpoint as fx
from nnhil.training import modelfile, onnx_export
from nnhil.training.intmodel import Conv2D, Dense, IntModel, MaxPool2D

RNG = np.random.default_rng(2029)


def ort_logits(model, images):
    s = ort.InferenceSession(onnx_export.to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {onnx_export.INPUT: images})[0]


def requant(n, mult, shift):
    return np.full(n, mult, np.uint16), np.full(n, shift, np.uint8)


def worst_case_cnn(weight, in_shape=(3, 11, 9), k=3, c1=5, c2=4, n_hidden=7, mult=65535, shift=24):
    """A CNN whose every weight is `weight` (127 or -128), so all-255 pixels make every product
    255 * weight and every pair sum 2 * 255 * weight (64,770 or -65,280: beyond int16)."""
    conv1 = Conv2D(np.full((c1, in_shape[0], k, k), weight, np.int8), np.arange(c1, dtype=np.int32) * 1000 - 2000,
                   *requant(c1, mult, shift), fx.OUTPUT_U8, in_shape)
    pool1 = MaxPool2D(conv1.shape_out)
    conv2 = Conv2D(np.full((c2, c1, 2, 2), weight, np.int8), np.zeros(c2, np.int32),
                   *requant(c2, 40000, 20), fx.OUTPUT_U8, pool1.shape_out)
    pool2 = MaxPool2D(conv2.shape_out)
    n_in = int(np.prod(pool2.shape_out))
    d1 = Dense(np.full((n_hidden, n_in), weight, np.int8), np.full(n_hidden, -7, np.int32),
               *requant(n_hidden, 65535, 16), fx.OUTPUT_U8)
    d2 = Dense(np.full((10, n_hidden), weight, np.int8), np.arange(10, dtype=np.int32) - 5,
               np.zeros(10, np.uint16), np.zeros(10, np.uint8), fx.OUTPUT_I32)
    return IntModel([conv1, pool1, conv2, pool2, d1, d2], in_shape)


@pytest.mark.parametrize("weight", [127, -128])
def test_worst_case_values_bit_exact(weight):
    model = worst_case_cnn(weight)
    imgs = np.concatenate([np.full((2,) + model.input_shape, 255, np.uint8),
                           np.zeros((1,) + model.input_shape, np.uint8),
                           RNG.integers(0, 256, (20,) + model.input_shape, dtype=np.uint8)])
    ours = ort_logits(model, imgs)
    assert ours.dtype == np.int32
    np.testing.assert_array_equal(ours, model.logits(imgs))
    if weight == 127:      # the all-255 image saturates the hidden layers at 255, logits at their largest
        acts = model.activations(imgs[:1])
        assert acts[0].max() == 255 and acts[4].min() == 255


def test_random_models_of_every_layer_kind_bit_exact():
    """Random int8 weights over the whole range (-128 included), random mult/shift across the
    format's range, odd shapes, a dense-only model: every logit equal."""
    for seed in range(6):
        rng = np.random.default_rng(seed)
        c_in, h, w, k = int(rng.integers(1, 4)), int(rng.integers(6, 14)), int(rng.integers(6, 14)), int(rng.integers(1, 4))
        co = int(rng.integers(1, 6))
        conv = Conv2D(rng.integers(-128, 128, (co, c_in, k, k), dtype=np.int8),
                      rng.integers(-5000, 5000, co, dtype=np.int32),
                      rng.integers(1, 65536, co).astype(np.uint16), rng.integers(10, 24, co).astype(np.uint8),
                      fx.OUTPUT_U8, (c_in, h, w))
        pool = MaxPool2D(conv.shape_out)
        n_in = int(np.prod(pool.shape_out))
        d = Dense(rng.integers(-128, 128, (5, n_in), dtype=np.int8), rng.integers(-10**6, 10**6, 5, dtype=np.int32),
                  np.zeros(5, np.uint16), np.zeros(5, np.uint8), fx.OUTPUT_I32)
        model = IntModel([conv, pool, d], (c_in, h, w))
        imgs = rng.integers(0, 256, (30, c_in, h, w), dtype=np.uint8)
        np.testing.assert_array_equal(ort_logits(model, imgs), model.logits(imgs))
    mlp = IntModel([Dense(RNG.integers(-128, 128, (13, 784), dtype=np.int8), RNG.integers(-9999, 9999, 13, dtype=np.int32),
                          *requant(13, 50000, 22), fx.OUTPUT_U8),
                    Dense(RNG.integers(-128, 128, (3, 13), dtype=np.int8), np.zeros(3, np.int32),
                          np.zeros(3, np.uint16), np.zeros(3, np.uint8), fx.OUTPUT_I32)], (28, 28))
    imgs = np.concatenate([np.full((1, 28, 28), 255, np.uint8), RNG.integers(0, 256, (40, 28, 28), dtype=np.uint8)])
    np.testing.assert_array_equal(ort_logits(mlp, imgs), mlp.logits(imgs))


def test_export_cli_writes_a_file_ort_runs(tmp_path, capsys):
    model = worst_case_cnn(-128)
    modelfile.save_quantized(tmp_path / "q.npz", model)
    assert cli.main(["export", str(tmp_path / "q.npz"), "--out", str(tmp_path / "m.onnx")]) == 0
    assert "bit for bit" in capsys.readouterr().out
    s = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    imgs = np.full((3,) + model.input_shape, 255, np.uint8)
    np.testing.assert_array_equal(s.run(None, {"pixels": imgs})[0], model.logits(imgs))
    assert cli.main(["export", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "n.onnx")]) == 2
    assert "no such model file" in capsys.readouterr().err
    assert not (tmp_path / "n.onnx").exists()
