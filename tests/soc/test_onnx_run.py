"""nnhil run on a model imported from ONNX: the board against ONNX Runtime (the oracle), the
images given as a Kaggle-layout CSV, and nnhil export's graph against the board's logits."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from nnhil.training import modelfile, onnx_export

pytestmark = pytest.mark.sim
ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "pytorch_cnn.onnx"
N = 60


def nnhil(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "nnhil.host.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


class Reader(CalibrationDataReader):
    def __init__(self, x):
        self.it = iter([{"input": x[i:i + 100]} for i in range(0, len(x), 100)])

    def get_next(self):
        return next(self.it, None)


def test_qdq_pytorch_model_on_the_board_against_onnx_runtime(fashion, tmp_path):
    train = fashion.train[0]
    images, labels = fashion.test[0][:N], fashion.test[1][:N]
    qdq = tmp_path / "cnn.qdq.onnx"
    quantize_static(str(FIXTURE), str(qdq), Reader(train[:300, None].astype(np.float32) / 255),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    r = nnhil("import", qdq, "--out", tmp_path / "q" / "quantized.npz")
    assert r.returncode == 0, r.stderr
    csv = tmp_path / "mine.csv"
    rows = ["label," + ",".join(f"pixel{i}" for i in range(1, 785))]
    rows += [",".join(map(str, [int(y)] + im.ravel().tolist())) for im, y in zip(images, labels)]
    csv.write_text("\n".join(rows) + "\n")
    r = nnhil("run", tmp_path / "q" / "quantized.npz", "--images-csv", csv, "--results-dir", tmp_path / "run")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"bit-exact        {N}/{N} images" in r.stdout
    (board,) = (tmp_path / "run" / "board").iterdir()
    res = np.load(board / "results.npz")
    summary = json.loads((board / "board.json").read_text())
    # the oracle's figures, recomputed here from ONNX Runtime's own run of the graph
    s = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"])
    probs = s.run(None, {"input": images[:, None].astype(np.float32) / np.float32(255)})[0]
    assert summary["onnx_top1_agreement"] == float((res["argmax"] == probs.argmax(1)).mean())
    assert summary["onnx_top1_agreement"] >= 0.95
    assert summary["onnx_accuracy"] == float((probs.argmax(1) == labels).mean())
    assert summary["board_accuracy"] == float((res["argmax"] == labels).mean())
    assert summary["onnx_max_logit_diff"] > 0 and "onnx_max_logit_diff_output_steps" in summary
    assert "ONNX Runtime     qdq graph cnn.qdq.onnx" in r.stdout and "round half up" in r.stdout
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["onnx_top1_agreement"] == summary["onnx_top1_agreement"]
    # nnhil export: ONNX Runtime on the integer graph gives the board's logits, every one
    model = modelfile.load_quantized(tmp_path / "q" / "quantized.npz")
    s = ort.InferenceSession(onnx_export.to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(s.run(None, {"pixels": images[:, None]})[0], res["logits"])
