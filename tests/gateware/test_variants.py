"""gateware.variants: each Arty A7 variant has its own part, default accelerator and build."""
import json
import os
import sys

import pytest

from nnhil.gateware import buildcache, program, resources, variants
from nnhil.training import home
from nnhil.gateware.layout import AccelConfig
from nnhil.host import board


def test_a7_35_default_is_the_sim_default():
    """The sim runs AccelConfig() by default: that is the A7-35's accelerator, its twin."""
    assert variants.get("a7-35").accel == AccelConfig()
    assert buildcache.arty_dir("a7-35") == home.builds() / f"arty-{buildcache.build_key('arty', AccelConfig())[1]}"


def test_the_build_key_follows_the_variant():
    same_cfg = {v: buildcache.build_key("arty", AccelConfig(), variant=v)[1] for v in variants.VARIANTS}
    assert len(set(same_cfg.values())) == len(variants.VARIANTS)
    assert buildcache.arty_dir("a7-100") != buildcache.arty_dir("a7-35")


def test_a7_100_accelerator_uses_the_larger_part():
    small, big = variants.get("a7-35"), variants.get("a7-100")
    assert big.accel.lanes * big.accel.weight_words > small.accel.lanes * small.accel.weight_words
    assert big.accel.lanes + 10 <= resources.DEVICES[big.device]["DSP48E1"]
    # a 784-256-128-10 MLP does not fit the A7-35's accelerator but fits the A7-100's
    model = program_shape_model((784, 256, 128, 10))
    with pytest.raises(program.ModelDoesNotFit):
        program.check_fits(model, small.accel)
    program.check_fits(model, big.accel)


def program_shape_model(sizes):
    import numpy as np
    from nnhil.training import fixedpoint as fx
    from nnhil.training.intmodel import Dense, IntModel
    layers = [Dense(np.ones((b, a), np.int8), np.zeros(b, np.int32), np.full(b, 1, np.uint16),
                    np.full(b, 8, np.uint8), fx.OUTPUT_I32 if i == len(sizes) - 2 else fx.OUTPUT_U8)
              for i, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    return IntModel(layers, input_shape=(sizes[0],))


def test_unknown_variant_is_named():
    with pytest.raises(ValueError, match="unknown Arty variant 'a7-50'.*a7-35, a7-100"):
        variants.get("a7-50")


STAND_IN = """#!{python}
# a stand-in openFPGALoader: records its arguments, answers as told by the test
import json, os, sys
with open(os.environ["NNHIL_LOADER_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if os.environ.get("NNHIL_LOADER_FAIL"):
    print("unable to open ftdi device: -3 (device not found)", file=sys.stderr)
    sys.exit(1)
"""


@pytest.fixture
def loader(tmp_path, monkeypatch):
    """An executable openFPGALoader first on PATH that records each call's arguments; returns
    a function reading them back."""
    bin_dir, log = tmp_path / "bin", tmp_path / "loader.jsonl"
    bin_dir.mkdir()
    tool = bin_dir / "openFPGALoader"
    tool.write_text(STAND_IN.format(python=sys.executable))
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("NNHIL_LOADER_LOG", str(log))
    return lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("name", list(variants.VARIANTS))
def test_program_runs_openfpgaloader_for_the_variant(loader, tmp_path, name):
    bit = tmp_path / "x.bit"
    board.program(bit, variant=name)
    board.program(bit, variant=name, cable="210319A8E3F1")
    expected = variants.get(name).loader_board
    assert loader() == [["-b", expected, str(bit)], ["-b", expected, "--ftdi-serial", "210319A8E3F1", str(bit)]]


def test_program_reports_the_loaders_failure(loader, tmp_path, monkeypatch):
    monkeypatch.setenv("NNHIL_LOADER_FAIL", "1")
    with pytest.raises(board.BoardError, match="failed to program .*x.bit:\\n.*device not found"):
        board.program(tmp_path / "x.bit", variant="a7-100")
    assert loader() == [["-b", "arty_a7_100t", str(tmp_path / "x.bit")]]


def test_program_without_openfpgaloader_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))          # an empty PATH directory
    with pytest.raises(board.BoardError, match="openFPGALoader is not installed: sudo apt-get install openfpgaloader"):
        board.program(tmp_path / "x.bit")


@pytest.mark.slow
def test_a7_100_sim_twin_runs_a_model_the_a7_35_cannot_hold(fashion):
    """The A7-100's sim twin (its accelerator in the sim SoC): a 784-256-128-10 MLP with random
    weights, bit-exact logits and argmax on test images, cycles equal to the cycle model."""
    import numpy as np
    from nnhil.gateware import cyclemodel
    from nnhil.host.driver import AcceleratorDriver
    from nnhil.host.simulator import Simulator
    from nnhil.training import fixedpoint as fx
    from nnhil.training.intmodel import Dense, IntModel

    cfg = variants.get("a7-100").accel
    rng = np.random.default_rng(1)
    sizes = (784, 256, 128, 10)
    model = IntModel([Dense(rng.integers(fx.WEIGHT_MIN, fx.WEIGHT_MAX + 1, (b, a)).astype(np.int8),
                            rng.integers(-5000, 5000, b).astype(np.int32), np.full(b, 1 << 15, np.uint16),
                            np.full(b, 22, np.uint8), fx.OUTPUT_I32 if i == len(sizes) - 2 else fx.OUTPUT_U8)
                      for i, (a, b) in enumerate(zip(sizes, sizes[1:]))], input_shape=(784,))
    images = fashion.test[0][:8]
    want = model.logits(images)
    with Simulator(buildcache.build_sim(cfg)) as s, s.bridge() as bridge:
        acc = AcceleratorDriver(bridge)
        assert acc.config == cfg
        acc.load(model)
        for image, logits in zip(images, want):
            r = acc.infer(image)
            assert list(r.logits) == list(logits) and r.argmax == int(np.argmax(logits))
            assert r.cycles == cyclemodel.cycles(model, cfg)
