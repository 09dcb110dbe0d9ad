"""nnhil selftest on the sim's fault build: a small MLP and CNN chosen to exercise every fault
(two input slots, an out_base, a four-group dense layer, accumulators past 2**23, position
pairs, a max-pool, argmax ties) catch each one, by the checks expected; a model without
negative accumulators leaves the broken ReLU "not exercised", which --strict fails; a fault no
check can see survives. The batch-timing bounds hold on the ordinary firmware at several batch
sizes and catch the late timer; --sims 2 gives one simulation's table.

One fault build per session (the simulation is built once, then cached), booted once for this
module and stopped after it, a few images each.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from nnhil.gateware import buildcache, faults
from nnhil.gateware.compiled import CompiledModel
from nnhil.gateware.layout import AccelConfig
from nnhil.host import coverage, selftest
from nnhil.host.dut import FaultBuildRefused, open_dut
from nnhil.host.firmware import batch_timing
from nnhil.host.results import Results
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
    "image_copy_short": {"logits"}, "batch_timing_late": {"timing"}, "logits_wrong_slot": {"logits"},
    "weight_bit_flip": {"readback"}, "image_byte_flip": {"logits"},
}
ONLY = {"mlp": {"acc_24_bits", "split_group_dropped", "out_base_ignored", "argmax_ties_last",
                "image_copy_short"},
        "cnn": {"kernel_row_stride", "pair_wrong_address", "maxpool_min"}}


@pytest.fixture(scope="module")         # its sim stopped after the module, not left spinning for the run
def fault_dut():
    with open_dut(sim_variant=buildcache.SimVariant(faults=True)) as dut:
        dut.firmware                                     # booted once for the module
        yield dut


@pytest.fixture(scope="module")
def campaigns(fault_dut):
    rng = np.random.default_rng(26)
    out = {}
    for name, build in (("mlp", mlp), ("cnn", cnn)):
        model = build(rng)
        x = images_for(rng, model)
        out[name] = (model, x, *selftest.campaign([fault_dut], model, x, faults=faults.FAULTS))
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
    verdicts, cov = selftest.campaign([fault_dut], model, x, faults=[faults.BY_NAME["relu_broken"]])
    v, = verdicts
    assert (v.verdict, v.reason, v.caught_by) == ("not exercised", coverage.EDGES["negative"][1], [])
    assert cov.total("negative") == 0
    assert selftest.failed(verdicts) == [] and selftest.failed(verdicts, strict=True) == [v]
    assert 'failures="1"' in selftest.junit(verdicts, True, 1.0)


def test_a_fault_no_check_can_see_survives(fault_dut):
    """A harness without the checks that see a fault: the broken ReLU, which the MLP's images
    exercise, met only by the cycle check, survives; that fails the campaign (a JUnit failure)
    even without --strict."""
    import dataclasses
    rng = np.random.default_rng(4)
    model = mlp(rng)
    x = images_for(rng, model)
    compiled = fault_dut.load(model)
    cov = coverage.measure(compiled, x)
    blind = dataclasses.replace(faults.BY_NAME["relu_broken"], checks=("cycles",))
    v = selftest.one_fault(fault_dut, compiled, x, None, model.logits(x), cov, blind)
    assert cov.total("negative") > 0
    assert (v.verdict, v.caught_by, v.reason) == ("survived", [], "")
    assert selftest.failed([v]) == [v]
    assert 'failures="1"' in selftest.junit([v], False, 1.0) and "survived" in selftest.table([v])


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


def test_batch_timing_bounds_hold_and_catch_a_late_start(fault_dut):
    """host.firmware.batch_timing on batches of 2, 3 and 5 images, double-buffered (the MLP, the
    CNN) and single-buffered (a 2100-byte input leaves no second slot): the ordinary firmware
    keeps within both bounds, the firmware whose timer starts after the first copies breaks the
    lower one at the batch's first image, and nothing else about the batch changes."""
    rng = np.random.default_rng(11)
    models = [mlp(rng), cnn(rng), am.random_model(rng, [2100, 20, 5])]
    batches = [(m, [images_for(rng, m, n) for n in (2, 3, 5)]) for m in models]
    late = {faults.define(faults.BY_NAME["batch_timing_late"]): 1}
    runs = {}
    try:
        for firmware in ("ordinary", "late"):
            fault_dut.boot_firmware(late if firmware == "late" else None)
            for k, (m, xs) in enumerate(batches):
                fault_dut.load(m)
                runs[firmware, k] = [fault_dut.infer(x) for x in xs]
    finally:
        fault_dut.boot_firmware()
    assert [CompiledModel.of(m, fault_dut.config).memory_image.slots for m in models] == [2, 2, 1]
    for k, (m, xs) in enumerate(batches):
        for x, good, bad in zip(xs, runs["ordinary", k], runs["late", k]):
            assert batch_timing(good, m.n_in, m.n_out) == [], (k, len(x), good.driver_cycles)
            problems = batch_timing(bad, m.n_in, m.n_out)
            assert len(problems) == 1 and problems[0].startswith("images 0-0 took "), (k, len(x), problems)
            np.testing.assert_array_equal(bad.logits, good.logits)
            np.testing.assert_array_equal(bad.cycles, good.cycles)
            assert bad.driver_cycles[0] < good.driver_cycles[0]
        # batches run one after another (--sims' chunks) keep within the bounds together
        assert batch_timing(Results.concatenate(runs["ordinary", k]), m.n_in, m.n_out) == []


def test_every_firmware_fault_has_one_site():
    """Each firmware fault's macro is tested by exactly one #ifdef of the firmware's sources,
    and no other NNHIL_FAULT_ macro is: the variant build_firmware makes for it changes what
    the list says, and nothing else."""
    sources = "".join(p.read_text() for p in sorted((Path(__file__).parents[2] / "firmware").glob("*.[ch]")))
    tested = re.findall(r"#ifdef (NNHIL_FAULT_\w+)", sources)
    want = [faults.define(f) for f in faults.FAULTS if f.kind == "firmware"]
    assert sorted(tested) == sorted(want)


def test_sims_share_the_campaign(fault_dut, tmp_path):
    """--sims 2 shares the faults over two simulations (each runs some) and gives the table one
    simulation gives."""
    from nnhil.host import cli
    from nnhil.training import modelfile
    rng = np.random.default_rng(8)
    model = mlp(rng)
    x = images_for(rng, model)
    names = ["cycles_from_1", "relu_broken", "image_byte_flip"]          # no firmware boots: cheap
    one, _ = selftest.campaign([fault_dut], model, x, faults=faults.get(names))
    modelfile.save_quantized(tmp_path / "quantized.npz", model)
    np.save(tmp_path / "x.npy", x)
    assert cli.main(["selftest", str(tmp_path / "quantized.npz"), "--images-npy", str(tmp_path / "x.npy"),
                     "--faults", ",".join(names), "--sims", "2", "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "board" / f"{tmp_path.name}-x" / "selftest.json").read_text())
    two = [selftest.Verdict(**f) for f in report["faults"]]
    assert {v.sim for v in two} == {1, 2} and {v.sim for v in one} == {1}
    assert selftest.table(two) == selftest.table(one)
    assert [v.verdict for v in one] == ["caught"] * len(names)


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
