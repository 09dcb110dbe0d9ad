"""`nnhil run` on models the project did not make: other shapes, a file written by hand, your own images."""
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nnhil.host import run as host_run, shards
from nnhil.training import modelfile

pytestmark = pytest.mark.sim
ROOT = Path(__file__).resolve().parents[2]


def nnhil(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "nnhil.host.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def run_and_check(model_file, out, images, *args):
    """nnhil run, then every image's on-board outputs checked here against the model."""
    r = nnhil("run", model_file, "--results-dir", out, *args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    model = modelfile.load_quantized(model_file)
    (board,) = (Path(out) / "board").iterdir()
    res = np.load(board / "results.npz")
    np.testing.assert_array_equal(res["logits"], model.logits(images))
    np.testing.assert_array_equal(res["argmax"], model.predict(images))
    assert f"bit-exact        {len(images)}/{len(images)} images" in r.stdout
    summary = json.loads((board / "board.json").read_text())
    assert summary["batch_timing_errors"] == [] and "within the bounds of the accelerator's counts" in r.stdout
    phases = summary["time"]["phases"]
    assert {"host timings", "reference", "start", "ready", "load", "CPU plain C", "CPU optimised C",
            "images", "outputs"} <= {p["phase"] for p in phases}
    # the host's own timings while no sim runs yet (a sim keeps its core busy between commands)
    assert max(p["end_s"] for p in phases if p["phase"] == "host timings") <= \
        min(p["start_s"] for p in phases if p["phase"] == "start")
    assert "time             " in r.stdout
    return r, summary


@pytest.mark.parametrize("train_args", [
    ["--layers", "784,48,24,10", "--epochs", "2"],
    ["--arch", "cnn", "--channels", "6,12", "--layers", "24,10", "--epochs", "1"],
], ids=["mlp-784-48-24-10", "cnn-6-12-24-10"])
def test_run_a_model_trained_with_other_shapes(fashion, tmp_path, train_args):
    r = nnhil("train", *train_args, "--model-dir", tmp_path / "model")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    _, summary = run_and_check(tmp_path / "model" / "quantized.npz", tmp_path / "run",
                               fashion.test[0][:120], "--images", 120)
    assert summary["cycles_exact"] and summary["cpu_bit_exact"]
    assert summary["board_accuracy"] == summary["software_int_accuracy"]


def test_run_over_two_sims(trained, tmp_path):
    """--sims 2: both simulations started, booted and loaded at once, the CPU inferences and
    the images shared out between them, the outputs those of one."""
    t = trained("mlp")
    _, summary = run_and_check(t.out_dir / "quantized.npz", tmp_path / "run", t.data.test[0][:400],
                               "--images", 400, "--sims", 2)
    assert summary["sims"] == 2 and summary["cycles_exact"] and summary["cpu_bit_exact"]
    assert summary["board_accuracy"] == summary["software_int_accuracy"]
    phases = summary["time"]["phases"]
    on = {(p["phase"], p["on"]) for p in phases}
    assert {(n, f"sim {k}") for n in ("start", "ready", "load") for k in (1, 2)} <= on
    cpu = [p for p in phases if p["phase"].startswith("CPU")]
    assert {p["phase"] for p in cpu} == {"CPU optimised C", "CPU plain C"}
    # an image in a code is a task: the C baselines shared out between the two sims
    assert sum(p.get("count", 1) for p in cpu) == 2 * host_run.CPU_IMAGES
    assert {p["on"] for p in cpu} == {"sim 1", "sim 2"}
    assert sum(p.get("count", 1) for p in phases if p["phase"] == "images") == len(shards.chunks(400, 2))


def write_by_hand(path, layers, input_shape):
    """A quantized model file from numpy, zipfile and json alone, as the README specifies it."""
    arrays, specs = {}, []
    for i, (w, b, mult, shift, output) in enumerate(layers):
        for name, a in (("weights", w), ("bias", b), ("mult", mult), ("shift", shift)):
            arrays[f"layer{i}.{name}"] = np.ascontiguousarray(a)
        specs.append({"type": "dense", "n_in": w.shape[1], "n_out": w.shape[0], "output": output})
    write_zip(path, {"kind": "quantized", "numeric_format": 1, "input_shape": list(input_shape),
                     "classes": None, "layers": specs, "meta": {}}, arrays)


def write_zip(path, manifest, arrays):
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = arrays[name]
        h.update(f"{name}|{a.dtype.str}|{','.join(map(str, a.shape))}|".encode() + a.tobytes())
    manifest = dict(manifest, format="nnhil-model", version=2, payload_sha256=h.hexdigest(),
                    arrays={n: {"dtype": a.dtype.str, "shape": list(a.shape),
                                "sha256": hashlib.sha256(a.tobytes()).hexdigest()} for n, a in arrays.items()})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("manifest.json", json.dumps(manifest))
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.save(buf, a, allow_pickle=False)
            z.writestr(name + ".npy", buf.getvalue())


def test_run_a_file_written_without_nnhil_on_your_own_images(tmp_path):
    rng = np.random.default_rng(3)

    def dense(n_out, n_in, output):
        return (rng.integers(-128, 128, (n_out, n_in)).astype(np.int8),
                rng.integers(-20000, 20000, n_out).astype(np.int32),
                rng.integers(1 << 12, 1 << 16, n_out).astype(np.uint16),
                np.full(n_out, 20, np.uint8), output)
    write_by_hand(tmp_path / "mine.npz", [dense(40, 100, "u8"), dense(7, 40, "i32")], (100,))
    images = rng.integers(0, 256, (60, 100), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "labels.npy", rng.integers(0, 7, 60))
    r, summary = run_and_check(tmp_path / "mine.npz", tmp_path / "run", images,
                               "--images-npy", tmp_path / "images.npy", "--labels-npy", tmp_path / "labels.npy")
    assert summary["board_accuracy"] == summary["software_int_accuracy"]

    np.save(tmp_path / "floats.npy", images.astype(np.float32))
    r = nnhil("run", tmp_path / "mine.npz", "--images-npy", tmp_path / "floats.npy", "--results-dir", tmp_path / "x")
    assert r.returncode == 2 and "images are float32, the model takes uint8" in r.stderr


def test_a_float_model_trained_elsewhere_is_quantized_and_run(fashion, tmp_path):
    """Float weights as PyTorch or Keras would export them, in a file numpy alone writes."""
    rng = np.random.default_rng(5)
    sizes = [784, 48, 10]
    arrays = {}
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        arrays[f"layer{i}.weights"] = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
        arrays[f"layer{i}.bias"] = (0.1 * rng.standard_normal(n_out)).astype(np.float32)
    write_zip(tmp_path / "float.npz", {"kind": "float", "arch": "mlp", "sizes": sizes,
                                       "standardizer": {"mean": 72.9, "std": 90.0}, "meta": {}}, arrays)
    r = nnhil("quantize", tmp_path / "float.npz", "--out", tmp_path / "q" / "mine.npz")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run_and_check(tmp_path / "q" / "mine.npz", tmp_path / "run", fashion.test[0][:50], "--images", 50)


def test_run_a_conv_model_whose_input_shape_is_h_w(tmp_path):
    """A conv model file whose manifest says input_shape [12, 12] (one channel, [1, 12, 12]) runs
    on the SoC from [N, 12, 12] images, bit-exact."""
    from nnhil.training import fixedpoint as fx
    from nnhil.training.intmodel import Conv2D, Dense, IntModel, MaxPool2D
    rng = np.random.default_rng(12)

    def rq(n):
        return dict(bias=rng.integers(-3000, 3000, n).astype(np.int32),
                    mult=rng.integers(1 << 12, 1 << 16, n).astype(np.uint16), shift=np.full(n, 18, np.uint8))
    conv = Conv2D(rng.integers(-128, 128, (6, 1, 3, 3)).astype(np.int8), output=fx.OUTPUT_U8,
                  in_shape=(1, 12, 12), **rq(6))
    dense = Dense(rng.integers(-128, 128, (10, 6 * 5 * 5)).astype(np.int8), output=fx.OUTPUT_I32, **rq(10))
    modelfile.save_quantized(tmp_path / "chw.npz", IntModel([conv, MaxPool2D((6, 10, 10)), dense], (1, 12, 12)))
    with zipfile.ZipFile(tmp_path / "chw.npz") as z:
        manifest = json.loads(z.read("manifest.json"))
        arrays = {n[:-4]: np.load(io.BytesIO(z.read(n))) for n in z.namelist() if n.endswith(".npy")}
    write_zip(tmp_path / "hw.npz", {k: v for k, v in dict(manifest, input_shape=[12, 12]).items()
                                    if k not in ("format", "version", "payload_sha256", "arrays")}, arrays)
    images = rng.integers(0, 256, (40, 12, 12), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    r, summary = run_and_check(tmp_path / "hw.npz", tmp_path / "run", images, "--images-npy", tmp_path / "images.npy")
    assert summary["cycles_exact"] and summary["cpu_bit_exact"]
    assert modelfile.load_quantized(tmp_path / "hw.npz").input_shape == (1, 12, 12)
