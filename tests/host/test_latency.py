"""Latency baselines: exact accelerator cycles, tolerant CPU cycles, readable diffs."""
import pytest

from gateware import resources
from gateware.layout import AccelConfig
from host import latency

NAME = "mlp 784-128-10 on lanes=64"
BASE = {"accelerator_cycles": 1806, "batch_cycles_per_image": 4032}


def test_within_bounds_gives_no_diff():
    assert latency.compare(NAME, {"accelerator_cycles": 1806, "batch_cycles_per_image": 4050},
                           {NAME: BASE}) == []


def test_changed_accelerator_cycles_fail_with_a_diff():
    lines = latency.compare(NAME, {"accelerator_cycles": 1807, "batch_cycles_per_image": 4032},
                            {NAME: BASE})
    assert lines[0].startswith(f"latency differs from the baseline for {NAME}")
    assert "accelerator_cycles: baseline 1806, now 1807 (+1, must match exactly)" in lines[1]
    assert "--update-baselines" in lines[-1]


def test_cpu_cycles_beyond_tolerance_fail():
    lines = latency.compare(NAME, {"accelerator_cycles": 1806, "batch_cycles_per_image": 4300},
                            {NAME: BASE})
    assert "batch_cycles_per_image: baseline 4032, now 4300 (+6.6%, tolerance 2%)" in lines[1]


def test_missing_baseline_says_how_to_record_it():
    assert latency.compare("other", {"accelerator_cycles": 1}, {}) == \
        ["no baseline for other: record one with --update-baselines"]


def test_update_then_compare_round_trip(tmp_path):
    path = tmp_path / "latency.json"
    latency.update(NAME, BASE, path)
    assert latency.compare(NAME, BASE, latency.load(path)) == []


def test_key_names_shape_and_configuration():
    k = latency.key(resources.headline_model(), AccelConfig())
    assert k.startswith("784 -> dense:128 dense:10 on lanes=64,weight_words=2048")
    k = latency.key(resources.headline_model("cnn"), AccelConfig())
    assert k.startswith("784 -> conv2x2:1x28x28->16 pool2x2 conv2x2:16x13x13->32 pool2x2 dense:64 dense:10 "
                        "on lanes=64")


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_committed_baseline_matches_the_cycle_model(arch):
    """The exact baseline in the repository agrees with the analytic model of the design."""
    from gateware import cyclemodel
    model, cfg = resources.headline_model(arch), AccelConfig()
    assert latency.load()[latency.key(model, cfg)]["accelerator_cycles"] == cyclemodel.cycles(model, cfg)
