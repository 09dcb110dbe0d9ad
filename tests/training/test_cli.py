"""The nnhil train / quantize / eval commands, end to end on real data, and their errors."""
import json

import pytest

from nnhil.host.cli import main
from nnhil.training import modelfile


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fashion):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--layers", "784,24,10", "--epochs", "2", "--no-download",
                 "--model-dir", str(out)]) == 0
    return out


def test_train_writes_models_metrics_and_plots(trained, capsys):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["layers"] == [784, 24, 10] and metrics["test_images"] == 10_000
    assert metrics["float_test_accuracy"] > 0.8 and metrics["int_test_accuracy"] > 0.8
    for name in ("float.npz", "quantized.npz", "curves.png", "confusion.png", "samples.png"):
        assert (trained / name).stat().st_size > 0


def test_eval_reports_the_same_accuracy_as_train(trained, capsys):
    metrics = json.loads((trained / "metrics.json").read_text())
    for name, key in (("quantized.npz", "int_test_accuracy"), ("float.npz", "float_test_accuracy")):
        capsys.readouterr()
        assert main(["eval", str(trained / name), "--no-download"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["test_accuracy"] == metrics[key]


def test_quantize_reproduces_the_trained_integer_model(trained, tmp_path):
    assert main(["quantize", str(trained / "float.npz"), "--out", str(tmp_path / "q.npz"),
                 "--no-download"]) == 0
    a = modelfile.load_quantized(trained / "quantized.npz")
    b = modelfile.load_quantized(tmp_path / "q.npz")
    assert a.hash == b.hash


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    from nnhil.host.testmodels import random_default_model
    modelfile.save_quantized(tmp_path / "m.npz", random_default_model("mlp"))
    assert main(["eval", str(tmp_path / "m.npz"), "--data-dir", str(tmp_path), "--no-download"]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "--data-dir" in err


def test_corrupt_model_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    assert main(["eval", str(bad), "--no-download"]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err


def test_bad_layers_flag(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--layers", "784,x,10"])
    assert "comma-separated" in capsys.readouterr().err


def test_train_cnn_from_the_command_line(tmp_path, fashion):
    out = tmp_path / "cnn"
    assert main(["train", "--arch", "cnn", "--channels", "4,8", "--kernel", "2", "--layers", "16,10",
                 "--epochs", "1", "--no-download", "--model-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["arch"] == "cnn" and metrics["int_test_accuracy"] > 0.7
    q = modelfile.load_quantized(out / "quantized.npz")
    assert [type(layer).__name__ for layer in q.layers] == ["Conv2D", "MaxPool2D", "Conv2D", "MaxPool2D",
                                                            "Dense", "Dense"]
