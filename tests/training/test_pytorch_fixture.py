"""A real torch.onnx.export graph (tests/fixtures/pytorch_cnn.onnx, made by make_pytorch_cnn.py
beside it: the project's CNN trained in PyTorch) through nnhil import, nnhil's quantizer and
ONNX Runtime's, against ONNX Runtime on Fashion-MNIST test images."""
from pathlib import Path

import numpy as np
import pytest
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from nnhil.host import oracle
from nnhil.training import datasets, modelfile
from nnhil.training.onnx_import import import_onnx
from nnhil.training.quantize import quantize

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "pytorch_cnn.onnx"
N = 1000


@pytest.fixture(scope="module")
def data():
    train = datasets.load_split("fashion-mnist", "train")[0]
    test_images, test_labels = datasets.load_split("fashion-mnist", "test")
    return train, test_images[:N], test_labels[:N]


def test_pytorch_export_imports_and_quantizes(tmp_path, data):
    train, images, labels = data
    result = import_onnx(FIXTURE, tmp_path / "float.npz")
    assert result.kind == "float"
    fmodel, st, meta = modelfile.load_float(tmp_path / "float.npz")
    assert fmodel.config() == {"input_shape": [1, 28, 28], "channels": [16, 32], "kernel": 2, "dense": [64, 10]}
    assert (st.mean, st.std) == pytest.approx((0.2860, 0.3530), rel=1e-6)   # the module's (x - mean) / std
    logits, _ = oracle.run_onnx(meta["onnx"], images)
    np.testing.assert_allclose(fmodel.logits(st(images)), logits, rtol=1e-3, atol=1e-3)
    q = quantize(fmodel, st, train[:2000], datasets.FASHION_MNIST.classes, meta)
    ort_acc = (logits.argmax(1) == labels).mean()
    assert ort_acc > 0.75                 # trained: one epoch on 10,000 images
    assert (q.predict(images) == logits.argmax(1)).mean() >= 0.98
    assert abs((q.predict(images) == labels).mean() - ort_acc) <= 0.02


class Reader(CalibrationDataReader):
    def __init__(self, x):
        self.it = iter([{"input": x[i:i + 100]} for i in range(0, len(x), 100)])

    def get_next(self):
        return next(self.it, None)


def test_pytorch_export_through_quantize_static(tmp_path, data):
    """ONNX Runtime's own quantizer on the real export; nnhil's integer model of its QDQ graph
    agrees with ONNX Runtime's int8 result on (nearly) every image."""
    train, images, labels = data
    info = {"input_shape": [1, 28, 28], "input_range": "0-1"}
    dst = tmp_path / "qdq.onnx"
    quantize_static(str(FIXTURE), str(dst), Reader(oracle.graph_input(train[:300], info)),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    import_onnx(dst, tmp_path / "q.npz")
    q = modelfile.load_quantized(tmp_path / "q.npz")
    logits, output = oracle.run_onnx(q.meta["onnx"], images)
    f = oracle.figures_of(q.meta["onnx"], q.logits(images), q.predict(images), logits, output, labels)
    assert f["onnx_top1_agreement"] >= 0.99, f
    assert f["onnx_max_logit_diff_output_steps"] < 3, f
