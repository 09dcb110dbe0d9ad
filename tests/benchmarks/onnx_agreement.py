"""The figures of docs/onnx.md (opt-in, never in the suite: three runs of the 10,000 test images).

The project's trained CNN and MLP (float.npz of `nnhil train`) are written as float ONNX
graphs in torch.onnx.export's node patterns (training.onnx_export.float_to_onnx), the CNN's
graph is also quantized by ONNX Runtime's quantize_static (QDQ, per-channel int8 weights,
uint8 activations, calibrated on the first 1,000 training images); then each goes through
`nnhil import` (and `nnhil quantize` for the float ones) and `nnhil run` (every test image), whose
ONNX Runtime oracle measures top-1 agreement and accuracy. Usage:

    python tests/benchmarks/onnx_agreement.py --cnn OUT/fashion-mnist-cnn.../float.npz \\
        --mlp OUT/fashion-mnist-mlp.../float.npz --work build/onnx-figures
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from nnhil.host import oracle
from nnhil.training import datasets, modelfile, onnx_export

CALIBRATION = 1000


def nnhil(*args):
    cmd = [sys.executable, "-m", "nnhil.host.cli", *map(str, args)]
    print("$ nnhil " + " ".join(map(str, args)), flush=True)
    subprocess.run(cmd, check=True)


def qdq(src, dst, train_images, info):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            x = oracle.graph_input(train_images[:CALIBRATION], info)
            self.it = iter([{info["input"]: x[i:i + 100]} for i in range(0, len(x), 100)])

        def get_next(self):
            return next(self.it, None)
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cnn", required=True)
    ap.add_argument("--mlp", required=True)
    ap.add_argument("--work", default="build/onnx-figures")
    ap.add_argument("--images", type=int, help="fewer images than the 10,000 (a rehearsal)")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    train = datasets.load_split("fashion-mnist", "train")[0]
    runs = {}
    for name, path in (("cnn", a.cnn), ("mlp", a.mlp)):
        model, st, _ = modelfile.load_float(path)
        src = work / f"{name}.onnx"
        onnx_export.export_float(model, st, src)
        nnhil("import", src, "--out", work / name / "float.npz")
        nnhil("quantize", work / name / "float.npz", "--out", work / name / "quantized.npz")
        runs[name] = work / name / "quantized.npz"
        if name == "cnn":
            info = {"input": "input", "input_shape": list(model.input_shape), "input_range": "0-1"}
            qdq(src, work / "cnn.qdq.onnx", train, info)
            nnhil("import", work / "cnn.qdq.onnx", "--out", work / "cnn-qdq" / "quantized.npz")
            runs["cnn-qdq"] = work / "cnn-qdq" / "quantized.npz"
    figures = {}
    for name, q in runs.items():
        out = work / "runs" / name
        nnhil("run", q, "--results-dir", out, *(["--images", a.images] if a.images else []))
        (board,) = (out / "board").iterdir()
        s = json.loads((board / "board.json").read_text())
        figures[name] = {k: v for k, v in s.items() if k.startswith("onnx_") or k in (
            "board_accuracy", "software_int_accuracy", "float_test_accuracy", "bit_exact_images", "images")}
    print(json.dumps(figures, indent=1))
    (work / "figures.json").write_text(json.dumps(figures, indent=1) + "\n")
    ok = all(f["bit_exact_images"] == f["images"] for f in figures.values())
    return 0 if ok and np.isfinite([f["onnx_top1_agreement"] for f in figures.values()]).all() else 1


if __name__ == "__main__":
    sys.exit(main())
