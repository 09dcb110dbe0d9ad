"""gateware.variants: each Arty A7 variant has its own part, default accelerator and build."""
import pytest

from gateware import program, resources, sim, variants
from training import home
from gateware.layout import AccelConfig
from host import board


def test_a7_35_default_is_the_sim_default():
    """The sim runs AccelConfig() by default: that is the A7-35's accelerator, its twin."""
    assert variants.get("a7-35").accel == AccelConfig()
    assert sim.arty_dir("a7-35") == home.builds() / f"arty-{sim.build_key('arty', AccelConfig())[1]}"


def test_the_build_key_follows_the_variant():
    same_cfg = {v: sim.build_key("arty", AccelConfig(), variant=v)[1] for v in variants.VARIANTS}
    assert len(set(same_cfg.values())) == len(variants.VARIANTS)
    assert sim.arty_dir("a7-100") != sim.arty_dir("a7-35")


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
    from training import fixedpoint as fx
    from training.intmodel import Dense, IntModel
    layers = [Dense(np.ones((b, a), np.int8), np.zeros(b, np.int32), np.full(b, 1, np.uint16),
                    np.full(b, 8, np.uint8), fx.OUTPUT_I32 if i == len(sizes) - 2 else fx.OUTPUT_U8)
              for i, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    return IntModel(layers, input_shape=(sizes[0],))


def test_unknown_variant_is_named():
    with pytest.raises(ValueError, match="unknown Arty variant 'a7-50'.*a7-35, a7-100"):
        variants.get("a7-50")


def test_program_picks_the_openfpgaloader_board(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(board.shutil, "which", lambda tool: "/usr/bin/openFPGALoader")
    monkeypatch.setattr(board.subprocess, "run",
                        lambda cmd, **kw: calls.append(cmd) or type("R", (), {"returncode": 0})())
    board.program(tmp_path / "x.bit", variant="a7-100")
    board.program(tmp_path / "x.bit")
    assert [c[2] for c in calls] == ["arty_a7_100t", "arty_a7_35t"]


@pytest.mark.slow
def test_a7_100_sim_twin_runs_a_model_the_a7_35_cannot_hold(fashion):
    """The A7-100's sim twin (its accelerator in the sim SoC): a 784-256-128-10 MLP with random
    weights, bit-exact logits and argmax on test images, cycles equal to the cycle model."""
    import numpy as np
    from gateware import cyclemodel
    from host.driver import AcceleratorDriver
    from host.simulator import Simulator
    from training import fixedpoint as fx
    from training.intmodel import Dense, IntModel

    cfg = variants.get("a7-100").accel
    rng = np.random.default_rng(1)
    sizes = (784, 256, 128, 10)
    model = IntModel([Dense(rng.integers(fx.WEIGHT_MIN, fx.WEIGHT_MAX + 1, (b, a)).astype(np.int8),
                            rng.integers(-5000, 5000, b).astype(np.int32), np.full(b, 1 << 15, np.uint16),
                            np.full(b, 22, np.uint8), fx.OUTPUT_I32 if i == len(sizes) - 2 else fx.OUTPUT_U8)
                      for i, (a, b) in enumerate(zip(sizes, sizes[1:]))], input_shape=(784,))
    images = fashion.test[0][:8]
    want = model.logits(images)
    with Simulator(sim.build_sim(cfg)) as s, s.bridge() as bridge:
        acc = AcceleratorDriver(bridge)
        assert acc.config == cfg
        acc.load(model)
        for image, logits in zip(images, want):
            r = acc.infer(image)
            assert list(r.logits) == list(logits) and r.argmax == int(np.argmax(logits))
            assert r.cycles == cyclemodel.cycles(model, cfg)
