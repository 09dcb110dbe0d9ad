"""nnhil run's images and labels: refused before anything starts (no simulation, nothing
written) when they do not fit the model, saying what is wrong and what to give instead."""
import subprocess
import sys

import numpy as np
import pytest

from nnhil.host import run
from nnhil.host.testmodels import random_default_model
from nnhil.training import fixedpoint as fx, modelfile
from nnhil.training.intmodel import Dense, IntModel

N = 6


@pytest.fixture(scope="module")
def model():
    return random_default_model("mlp")           # 10 outputs


@pytest.fixture
def images(tmp_path):
    path = tmp_path / "images.npy"
    np.save(path, np.random.default_rng(1).integers(0, 256, (N, 784), dtype=np.uint8))
    return path


BAD = {   # labels -> what the error says
    "out of range": (np.array([0, 1, 2, 99, 4, 10]),
                     r"label 99 \(image 3\) is not one of the model's 10 classes, 0 to 9; 2 of 6 labels"),
    "negative": (np.array([0, -1, 2, 3, 4, 5], np.int8), r"label -1 \(image 1\) is not one of the model's 10"),
    "float": (np.arange(N, dtype=np.float64), r"labels are float64, expected integers: an index into the "
                                              r"model's 10 classes, 0 to 9 \(save them with numpy.save"),
    "bool": (np.ones(N, bool), r"labels are bool, expected integers"),
    "fewer than the images": (np.arange(N - 1), rf"labels are \[{N - 1}\], expected \[{N}\]: one per image"),
    "more than the images": (np.arange(N + 1) % 10, rf"labels are \[{N + 1}\], expected \[{N}\]"),
    "two-dimensional": (np.zeros((N, 1), np.int64), rf"labels are \[{N}, 1\], expected \[{N}\]"),
}


@pytest.mark.parametrize("kind", BAD)
def test_bad_labels_are_refused(model, images, tmp_path, kind):
    labels, message = BAD[kind]
    np.save(tmp_path / "labels.npy", labels)
    with pytest.raises(run.InputError, match=f"labels.npy: {message}"):
        run.user_images(model, images, tmp_path / "labels.npy")


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint64, np.int64])
def test_labels_at_the_class_limits_are_taken(model, images, tmp_path, dtype):
    labels = np.array([0, 9, 3, 0, 9, 1], dtype)
    np.save(tmp_path / "labels.npy", labels)
    _, got = run.user_images(model, images, tmp_path / "labels.npy")
    assert got.dtype == np.int64 and got.tolist() == labels.tolist()


def test_nnhil_run_refuses_bad_labels_before_it_starts(model, images, tmp_path):
    """The command line: exit status 2 and the message, no traceback, no run folder made."""
    modelfile.save_quantized(tmp_path / "model.npz", model)
    np.save(tmp_path / "labels.npy", np.array([0, 1, 2, 99, 4, 5]))
    r = subprocess.run([sys.executable, "-m", "nnhil.host.cli", "run", str(tmp_path / "model.npz"),
                        "--images-npy", str(images), "--labels-npy", str(tmp_path / "labels.npy"),
                        "--results-dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "label 99 (image 3) is not one of the model's 10 classes, 0 to 9" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("input_shape", [(1, 28, 28), (28, 28)])
def test_a_conv_model_takes_one_channel_images_in_any_form(tmp_path, input_shape):
    """[N, H, W], [N, 1, H, W] or flat: the same images for a conv model of input_shape [1, H, W]
    or [H, W] (which is [1, H, W]); another size or channel count is refused."""
    cnn = random_default_model("cnn")
    model = IntModel(cnn.layers, input_shape)
    x = np.random.default_rng(2).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    for form in (x, x[:, None], x.reshape(3, -1)):
        np.save(tmp_path / "x.npy", form)
        got, _ = run.user_images(model, tmp_path / "x.npy")
        assert got.shape == (3, 1, 28, 28) and np.array_equal(got[:, 0], x)
    for shape in ((3, 28, 27), (3, 2, 28, 28), (3, 1, 1, 28, 28)):
        np.save(tmp_path / "x.npy", np.zeros(shape, np.uint8))
        with pytest.raises(run.InputError, match=rf"images are \[{', '.join(map(str, shape))}\], the model "
                                                 rf"takes \[N, 1, 28, 28\] \(or \[N, 784\]\)"):
            run.user_images(model, tmp_path / "x.npy")


def test_an_mlp_takes_images_of_its_input_size_in_any_shape(model, tmp_path):
    """An MLP's input_shape is flat ([784]): images [N, 28, 28] or [N, 1, 28, 28] (a dataset's,
    saved as they are) are its 784 pixels in order, as flat ones are; another size is refused."""
    assert model.input_shape == (784,)
    x = np.random.default_rng(3).integers(0, 256, (N, 28, 28), dtype=np.uint8)
    for form in (x, x[:, None], x.reshape(N, -1)):
        np.save(tmp_path / "x.npy", form)
        got, _ = run.user_images(model, tmp_path / "x.npy")
        assert got.shape == (N, 784) and np.array_equal(got, x.reshape(N, -1))
        assert np.array_equal(model.logits(got), model.logits(x.reshape(N, -1)))
    for shape in ((N, 28, 27), (N, 785), (N, 2, 28, 28), (N,)):
        np.save(tmp_path / "x.npy", np.zeros(shape, np.uint8))
        with pytest.raises(run.InputError, match=rf"images are \[{', '.join(map(str, shape))}\], the model "
                                                 rf"takes \[N, 784\] \(784 values an image, in any shape\)"):
            run.user_images(model, tmp_path / "x.npy")


def with_outputs(model, n_out):
    """``model`` with a logits layer of ``n_out`` outputs in place of its last."""
    last, rng = model.layers[-1], np.random.default_rng(4)
    logits = Dense(rng.integers(-128, 128, (n_out, last.n_in)).astype(np.int8), np.zeros(n_out, np.int32),
                   np.ones(n_out, np.uint16), np.zeros(n_out, np.uint8), last.output)
    return IntModel(model.layers[:-1] + [logits], model.input_shape, meta={"dataset": "mnist"})


def nnhil_run(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "nnhil.host.cli", "run", *map(str, args),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("n_out", [12, 5])
def test_a_dataset_of_other_classes_than_the_model_outputs_is_refused_before_it_starts(model, tmp_path, n_out):
    """mnist's labels cannot score a model of 12 outputs (it would predict classes 10 and 11, past
    the confusion matrix) nor of 5: exit status 2 and why, before any simulation, nothing written."""
    modelfile.save_quantized(tmp_path / "model.npz", with_outputs(model, n_out))
    for dataset in ([], ["--dataset", "mnist"]):               # recorded in the file, or given
        r = nnhil_run(tmp_path, tmp_path / "model.npz", *dataset)
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"model.npz has {n_out} outputs, mnist has 10 classes: its labels cannot score this model; " \
               f"give images of its own classes with --images-npy" in r.stderr
        assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


def test_a_dataset_of_another_image_size_is_refused_before_it_starts(tmp_path, dataset):
    """An MLP of 1,024 inputs on mnist's 28 x 28 test images: named, not a NumPy reshape error."""
    dataset("mnist")                                           # in $NNHIL_DATA_DIR
    dense = Dense(np.zeros((10, 1024), np.int8), np.zeros(10, np.int32), np.ones(10, np.uint16),
                  np.zeros(10, np.uint8), fx.OUTPUT_I32)
    modelfile.save_quantized(tmp_path / "model.npz", IntModel([dense], (1024,)))
    r = nnhil_run(tmp_path, tmp_path / "model.npz", "--dataset", "mnist")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "mnist's test set: images are [10000, 28, 28], the model takes [N, 1024] (1024 values an image, " \
           "in any shape)" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()
