"""Damaged model files: every one is refused with a ModelFileError naming the fault, or loads identically."""
import json
import zipfile

import numpy as np
import pytest

from nnhil.training import modelfile
from nnhil.training.intmodel import Conv2D, Dense, IntModel, MaxPool2D

STEPS = 97            # truncation lengths and byte flips spread over the whole file


def small_cnn():
    rng = np.random.default_rng(7)

    def rq(n):
        return dict(mult=rng.integers(1, 1 << 16, n).astype(np.uint16),
                    shift=rng.integers(10, 20, n).astype(np.uint8), bias=rng.integers(-99, 99, n).astype(np.int32))
    conv = Conv2D(weights=rng.integers(-128, 128, (4, 1, 2, 2)).astype(np.int8), in_shape=(1, 7, 7),
                  output="u8", **rq(4))
    dense = Dense(weights=rng.integers(-128, 128, (3, 36)).astype(np.int8), output="i32", **rq(3))
    return IntModel([conv, MaxPool2D((4, 6, 6)), dense], (1, 7, 7))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "good.npz"
    model = small_cnn()
    modelfile.save_quantized(path, model)
    return path, path.read_bytes(), modelfile.load_quantized(path)


def refused_or_identical(path, reference):
    try:
        model = modelfile.load_quantized(path)
    except modelfile.ModelFileError as e:
        assert str(path) in str(e)
        return "refused"
    assert model.hash == reference.hash
    x = np.random.default_rng(0).integers(0, 256, (4, 1, 7, 7), dtype=np.uint8)
    np.testing.assert_array_equal(model.logits(x), reference.logits(x))
    return "identical"


def test_truncated_files(good, tmp_path):
    path, data, ref = good
    lengths = sorted(set(range(0, 64)) | set(np.linspace(0, len(data) - 1, STEPS, dtype=int)))
    for n in lengths:
        (tmp_path / "t.npz").write_bytes(data[:n])
        assert refused_or_identical(tmp_path / "t.npz", ref) == "refused", n


def test_flipped_bytes(good, tmp_path):
    path, data, ref = good
    outcomes = set()
    for at in np.linspace(0, len(data) - 1, 4 * STEPS, dtype=int):
        bad = bytearray(data)
        bad[at] ^= 0xFF
        (tmp_path / "f.npz").write_bytes(bytes(bad))
        outcomes.add(refused_or_identical(tmp_path / "f.npz", ref))
    assert "refused" in outcomes        # a flip in zip padding or an unused field may load unchanged


def rewrite_manifest(src, dst, manifest):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            zout.writestr(item, json.dumps(manifest) if item.filename == "manifest.json" else data)


def first_layer(**change):
    return lambda m: dict(m, layers=[dict(m["layers"][0], **change)] + m["layers"][1:])


WRONG_MANIFESTS = {
    "a list": lambda m: [m], "a string": lambda m: "a string", "a number": lambda m: 42,
    "null": lambda m: None, "arrays a list": lambda m: dict(m, arrays=list(m["arrays"])),
    "arrays a string": lambda m: dict(m, arrays="x"),
    "array entries lists": lambda m: dict(m, arrays={k: [v] for k, v in m["arrays"].items()}),
    "layers an object": lambda m: dict(m, layers={"0": m["layers"][0]}),
    "layers numbers": lambda m: dict(m, layers=[1, 2, 3]),
    "layer type a list": first_layer(type=["conv2d"]), "in_shape a string": first_layer(in_shape="1x7x7"),
    "kernel null": first_layer(kernel=None), "a layer missing": lambda m: dict(m, layers=m["layers"][:2]),
    "input_shape of rank 4": lambda m: dict(m, input_shape=[1, 1, 7, 7]),
    "input_shape [H, W] of another size": lambda m: dict(m, input_shape=[7, 8]),
    "input_shape of other channels": lambda m: dict(m, input_shape=[2, 7, 7]),
    "input_shape null": lambda m: dict(m, input_shape=None),
    "numeric format a string": lambda m: dict(m, numeric_format="2"),
    "payload hash null": lambda m: dict(m, payload_sha256=None),
    "no layers": lambda m: {k: v for k, v in m.items() if k != "layers"},
}


@pytest.mark.parametrize("change", WRONG_MANIFESTS.values(), ids=WRONG_MANIFESTS.keys())
def test_manifests_of_the_wrong_shape(good, tmp_path, change):
    path, _, ref = good
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
    rewrite_manifest(path, tmp_path / "m.npz", change(manifest))
    with pytest.raises(modelfile.ModelFileError, match=str(tmp_path / "m.npz")):
        modelfile.load_quantized(tmp_path / "m.npz")


def test_an_h_w_input_shape_is_one_channel(good, tmp_path):
    """A conv model's input_shape [H, W] is [1, H, W]: the file loads identically, as (1, H, W)."""
    path, _, ref = good
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
    assert manifest["input_shape"] == [1, 7, 7]
    rewrite_manifest(path, tmp_path / "hw.npz", dict(manifest, input_shape=[7, 7]))
    assert refused_or_identical(tmp_path / "hw.npz", ref) == "identical"
    assert modelfile.load_quantized(tmp_path / "hw.npz").input_shape == (1, 7, 7)
    rewrite_manifest(path, tmp_path / "wide.npz", dict(manifest, input_shape=[7, 8]))
    with pytest.raises(modelfile.ModelFileError, match=r"layer 0 \(conv2d\) takes a \(1, 7, 7\) \(C, H, W\) "
                       r"input but the model's input_shape is \(1, 7, 8\) \(\[H, W\] is \[1, H, W\]\)"):
        modelfile.load_quantized(tmp_path / "wide.npz")
