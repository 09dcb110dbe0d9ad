"""nnhil selftest on the sim's fault build: a small MLP and CNN chosen to exercise every fault
(two input slots, an out_base, a four-group dense layer, accumulators past 2**23, position
pairs, a max-pool, argmax ties) catch each one, by the checks expected; a model without
negative accumulators leaves the broken ReLU "not exercised", which --strict fails.

One fault build per session (the simulation is built once, then cached), a few images each.
"""
import json

import numpy as np
import pytest

from nnhil.gateware import buildcache, faults
from nnhil.gateware.compiled import CompiledModel
from nnhil.gateware.layout import AccelConfig
from nnhil.host import coverage, selftest
from nnhil.host.dut import FaultBuildRefused, open_dut
from nnhil.training import fixedpoint as fx
from nnhil.training.intmodel import IntModel, MaxPool2D
from tests.gateware import accel_models as am

# with pytest -n --dist loadgroup one worker runs them all: one fault simulation, booted once
pytestmark = [pytest.mark.sim, pytest.mark.xdist_group("selftest-fault-build")]
IMAGES = 4


def mlp(rng):
    """300 -> 64 (every lane, channel 0 past 2**23 on a bright image) -> 16 (four lane groups,
    a partial tile, act0 output at a non-zero out_base) -> 10 logits, of which 0 and 1 tie."""
    hidden = am.dense(rng, 300, 64, False, gain=2)
    hidden.weights[0] = fx.WEIGHT_MAX
    hidden.bias[0] = -(1 << 20)
    mid = am.dense(rng, 64, 16, False, gain=2)
    last = am.dense(rng, 16, 10, True)
    last.weights[1] = last.weights[0]
    last.bias[1] = last.bias[0] = np.abs(last.bias).max() + (1 << 24)    # the largest: a tie, always
    return am.model_of([hidden, mid, last])


def cnn(rng):
    """(1, 12, 12): conv 2x2 -> 32 channels in position pairs (the last lane: the pair's second
    position of channel 31) + pool, then 800 -> 10 logits in four lane groups."""
    conv = am.conv(rng, (1, 12, 12), 32, 2, gain=2)
    pool = MaxPool2D(conv.shape_out)
    return IntModel([conv, pool, am.dense(rng, int(np.prod(pool.shape_out)), 10, True)], input_shape=(1, 12, 12))


def images_for(rng, model, n=IMAGES):
    x = rng.integers(0, fx.ACT_MAX + 1, (n,) + tuple(model.input_shape)).astype(np.uint8)
    x[0] = fx.ACT_MAX                                   # the bright image: the largest sums
    return x


# The checks each fault must be caught by, at least, on the model that exercises it (a fault
# may meet more: "accuracy" when it changes an argmax). The layer-by-layer report runs one
# image in slot 0 through the host's driver: it sees what the datapath computes, not the
# firmware's batch, its slots or what the cycle counter says.
VALUES = {"logits", "divergence"}
REQUIRED = {
    "round_dropped": VALUES, "round_off_by_one": VALUES, "saturation_short": VALUES,
    "relu_broken": VALUES, "acc_24_bits": VALUES, "lane_weight_stuck": VALUES,
    "partial_tile_lane_dropped": VALUES | {"cycles"}, "neighbour_requant": VALUES,
    "kernel_row_stride": VALUES, "split_group_dropped": VALUES, "pair_wrong_address": VALUES,
    "input_slot_ignored": {"logits", "repeat"}, "out_base_ignored": VALUES, "maxpool_min": VALUES,
    "argmax_ties_last": {"logits", "accuracy"}, "cycles_from_1": {"cycles"},
    "acc_not_cleared": {"logits", "repeat"}, "stage_longer": {"cycles"},
    "image_copy_short": {"logits"}, "logits_wrong_slot": {"logits"},
    "weight_bit_flip": {"readback"}, "image_byte_flip": {"logits"},
}
ONLY = {"mlp": {"acc_24_bits", "split_group_dropped", "out_base_ignored", "argmax_ties_last",
                "image_copy_short"},
        "cnn": {"kernel_row_stride", "pair_wrong_address", "maxpool_min"}}


@pytest.fixture(scope="session")
def fault_dut():
    with open_dut(sim_variant=buildcache.SimVariant(faults=True)) as dut:
        dut.firmware                                     # booted once for the session
        yield dut


@pytest.fixture(scope="module")
def campaigns(fault_dut):
    rng = np.random.default_rng(26)
    out = {}
    for name, build in (("mlp", mlp), ("cnn", cnn)):
        model = build(rng)
        x = images_for(rng, model)
        out[name] = (model, x, *selftest.campaign([fault_dut], model, x, faults=faults.FAULTS,
                                                  log=lambda *_: None))
    return out


def test_the_models_exercise_what_they_are_chosen_for():
    rng = np.random.default_rng(26)
    cfg = AccelConfig()
    m = mlp(rng)
    cm = CompiledModel.of(m, cfg)
    assert cm.memory_image.slots == 2 and cm.memory_image.out_bases[1] > 0
    assert [s.groups(cfg.lanes) for s in cm.shapes] == [1, 4, 4]
    c = cnn(rng)
    assert [s.pairs(cfg.lanes) for s in CompiledModel.of(c, cfg).shapes] == [2, 1]
    mc, cc = coverage.measure(cm, images_for(rng, m)), coverage.measure(CompiledModel.of(c, cfg), images_for(rng, c))
    for f in faults.FAULTS:
        assert f.edge == "" or mc.total(f.edge) or cc.total(f.edge), f.name


def test_every_fault_is_caught_by_its_checks(campaigns):
    assert set(REQUIRED) == set(faults.BY_NAME)
    for f in faults.FAULTS:
        for name, (_, _, verdicts, cov) in campaigns.items():
            v = next(v for v in verdicts if v.fault == f.name)
            other = next(m for m in ONLY if m != name)
            if f.name in ONLY[other]:     # the other model is the one chosen for it
                assert v.verdict in ("caught", "not exercised"), (f.name, name, v)
                if v.verdict == "not exercised":
                    assert v.reason == cov.reason(f.edge), (f.name, name, v)
                continue
            assert v.verdict == "caught", (f.name, name, v)
            assert REQUIRED[f.name] <= set(v.caught_by) <= set(f.checks) | {"completes"}, (f.name, name, v)
            if "divergence" in v.caught_by and "cycles" not in v.caught_by:   # a value differed
                assert v.first_layer is not None, (f.name, name)


def test_what_the_cnn_cannot_reach_is_not_exercised(campaigns):
    verdicts = {v.fault: v for v in campaigns["cnn"][2]}
    expected = {"out_base_ignored": "out_base", "acc_24_bits": "beyond_2_23", "argmax_ties_last": "argmax_tie",
                "image_copy_short": "image_tail"}     # (its pool drops the row of the last input word)
    for name, edge in expected.items():
        assert (verdicts[name].verdict, verdicts[name].reason) == ("not exercised", coverage.EDGES[edge][1]), name


def test_reports(campaigns, tmp_path):
    _, _, verdicts, cov = campaigns["mlp"]
    js, xml = selftest.write_reports(tmp_path, verdicts, cov, False, 1.0)
    data = json.loads(js.read_text())
    assert [f["fault"] for f in data["faults"]] == [f.name for f in faults.FAULTS]
    assert data["coverage"]["layers"][0]["beyond_2_23"] > 0
    text = xml.read_text()
    assert text.count("<testcase ") == len(faults.FAULTS) and 'failures="0"' in text
    assert "relu_broken" in selftest.table(verdicts)


def test_no_negative_accumulators_leaves_relu_not_exercised(fault_dut, tmp_path):
    """All weights and biases positive: no hidden value is ever negative, so a broken ReLU
    cannot show; the verdict says why, and --strict fails on it."""
    rng = np.random.default_rng(5)
    model = am.model_of([am.dense(rng, 20, 12, False, wlo=0, bias_scale=0), am.dense(rng, 12, 4, True)])
    model.layers[0].bias[:] = np.abs(model.layers[0].bias)
    x = images_for(rng, model)
    verdicts, cov = selftest.campaign([fault_dut], model, x, faults=[faults.BY_NAME["relu_broken"]],
                                      log=lambda *_: None)
    v, = verdicts
    assert (v.verdict, v.reason, v.caught_by) == ("not exercised", coverage.EDGES["negative"][1], [])
    assert cov.total("negative") == 0
    assert selftest.failed(verdicts) == [] and selftest.failed(verdicts, strict=True) == [v]
    assert 'failures="1"' in selftest.junit(verdicts, True, 1.0)


def test_ordinary_runs_refuse_the_fault_build(fault_dut):
    from nnhil.host.dut import check_fault_build
    assert fault_dut.identity.fault_build
    with pytest.raises(FaultBuildRefused, match="only 'nnhil selftest' runs it"):
        check_fault_build(fault_dut, False)


def test_bad_fault_names_fail_before_any_work(capsys):
    from nnhil.host import cli
    assert cli.main(["selftest", "no-such-model.npz", "--faults", "relu_broken,stuck_pixel"]) == 2
    assert "--faults: unknown fault stuck_pixel: the faults are" in capsys.readouterr().err


def test_command_line(tmp_path, capsys):
    """nnhil selftest on a model file and .npy images: the table, the reports beside the run's
    outputs, exit 0; with --strict the fault the model cannot reach fails it (exit 1)."""
    from nnhil.host import cli
    from nnhil.training import modelfile
    rng = np.random.default_rng(7)
    model = am.model_of([am.dense(rng, 20, 12, False, wlo=0, bias_scale=0), am.dense(rng, 12, 4, True)])
    model.layers[0].bias[:] = np.abs(model.layers[0].bias)           # nothing negative: no ReLU edge
    modelfile.save_quantized(tmp_path / "quantized.npz", model)
    np.save(tmp_path / "x.npy", images_for(rng, model))
    args = ["selftest", str(tmp_path / "quantized.npz"), "--images-npy", str(tmp_path / "x.npy"),
            "--faults", "cycles_from_1,relu_broken", "--results-dir", str(tmp_path / "out")]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "cycles_from_1" in out and "1 caught, 1 not exercised, 0 survived of 2 faults" in out
    board_dir = tmp_path / "out" / "board" / f"{tmp_path.name}-x"       # <model's folder>-<images>
    report = json.loads((board_dir / "selftest.json").read_text())
    assert [(f["fault"], f["verdict"]) for f in report["faults"]] == [("cycles_from_1", "caught"),
                                                                       ("relu_broken", "not exercised")]
    assert 'skipped="1"' in (board_dir / "selftest-junit.xml").read_text()
    assert cli.main(args + ["--strict"]) == 1


def test_state_left_behind_stops_the_campaign(fault_dut):
    """The check after each fault (no fault selected, a few images exact) stops the campaign
    when the DUT still misbehaves: here the fault is still selected."""
    rng = np.random.default_rng(3)
    model = mlp(rng)
    x = images_for(rng, model)
    compiled = fault_dut.load(model)
    fault_dut.accelerator.write_csr("fault_select", faults.code("relu_broken"))
    try:
        with pytest.raises(selftest.SelftestError, match="after relu_broken, 4 of 4 images differ"):
            selftest._clean(fault_dut, compiled, x, model.logits(x), "after relu_broken")
    finally:
        fault_dut.accelerator.write_csr("fault_select", 0)
