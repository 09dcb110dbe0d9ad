"""Latency baselines: exact accelerator cycles, tolerant CPU cycles, readable diffs, and the
committed baselines as the anchor of the cycle model the RTL takes its pipeline depths from."""
import pytest

from nnhil.gateware import cyclemodel
from nnhil.gateware.compiled import CompiledModel
from nnhil.gateware.layout import AccelConfig
from nnhil.host import latency
from nnhil.host.testmodels import random_default_model
from nnhil.training.workflow import MODELS

NAME = latency.key("mlp", "fashion-mnist", "sim")
RAN = latency.setup(CompiledModel.of(random_default_model(), AccelConfig()))
BASE = {NAME: {"setup": RAN, "measured": {"accelerator_cycles": 1806, "batch_cycles_per_image": 4032}}}


def test_within_bounds_gives_no_diff():
    assert latency.compare(NAME, RAN, {"accelerator_cycles": 1806, "batch_cycles_per_image": 4050}, BASE) == []


def test_changed_accelerator_cycles_fail_with_a_diff():
    lines = latency.compare(NAME, RAN, {"accelerator_cycles": 1807, "batch_cycles_per_image": 4032}, BASE)
    assert lines[0].startswith(f"latency differs from the baseline for {NAME}")
    assert "accelerator_cycles: baseline 1806, now 1807 (+1, must match exactly)" in lines[1]
    assert "--update-baselines" in lines[-1]


def test_cpu_cycles_beyond_tolerance_fail():
    lines = latency.compare(NAME, RAN, {"accelerator_cycles": 1806, "batch_cycles_per_image": 4300}, BASE)
    assert "batch_cycles_per_image: baseline 4032, now 4300 (+6.6%, tolerance 2%)" in lines[1]


def test_missing_baseline_says_how_to_record_it():
    assert latency.compare("other", RAN, {"accelerator_cycles": 1}, {}) == \
        ["no baseline for other: record one with --update-baselines"]


def test_another_program_or_configuration_is_not_its_baseline():
    cnn = latency.setup(CompiledModel.of(random_default_model("cnn"), AccelConfig()))
    lines = latency.compare(NAME, cnn, BASE[NAME]["measured"], BASE)
    assert "the baseline was recorded for dense 784->128; dense 128->10 on lanes=64," in lines[1]
    assert "this run is conv 2x2 (1,28,28)->16 + pool; conv 2x2 (16,13,13)->32 + pool;" in lines[2]
    other_build = latency.setup(CompiledModel.of(random_default_model(), AccelConfig(bias_entries=256)))
    assert "bias_entries=256" in latency.compare(NAME, other_build, BASE[NAME]["measured"], BASE)[2]


def test_update_then_compare_round_trip(tmp_path):
    path = tmp_path / "latency.json"
    latency.update(NAME, RAN, BASE[NAME]["measured"], path)
    assert latency.load(path) == BASE
    assert latency.compare(NAME, RAN, BASE[NAME]["measured"], latency.load(path)) == []


def test_key_names_architecture_dataset_and_platform():
    assert latency.key("cnn", "mnist", "sim") != latency.key("cnn", "fashion-mnist", "sim")
    assert latency.key("cnn", "mnist", "sim") != latency.key("cnn", "mnist", "digilent_arty")
    assert latency.key("mlp", "fashion-mnist", "sim", "a7-35") == latency.key("mlp", "fashion-mnist", "sim")
    assert latency.key("mlp", "fashion-mnist", "sim", "a7-100") == "mlp on fashion-mnist, sim, a7-100"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_committed_baseline_is_of_the_models_program(name, repo_baselines):
    """Each model of the project has a sim baseline, recorded for its program on the default build."""
    arch, dataset = MODELS[name]
    baseline = latency.load(repo_baselines)[latency.key(arch, dataset, "sim")]
    assert baseline["setup"] == latency.setup(CompiledModel.of(random_default_model(arch), AccelConfig()))


def test_committed_baselines_match_the_cycle_model(repo_baselines):
    """Every recorded accelerator cycle count equals the cycle model of its program: the RTL's
    pipeline depths come from gateware.cyclemodel, so only this catches a changed latency
    constant whose baselines were not re-recorded on the hardware."""
    baselines = latency.load(repo_baselines)
    assert len(baselines) >= len(MODELS)
    for name, baseline in baselines.items():
        shapes, cfg = latency.program_of(baseline)
        assert cyclemodel.shape_cycles(shapes, cfg.lanes) == baseline["measured"]["accelerator_cycles"], name
