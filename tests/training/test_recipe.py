"""Every difference of the default recipe from plain SGD can be switched off (the seed's 784-128-10-10 recipe)."""
import numpy as np
import pytest

from nnhil.training.train import Standardizer, TrainConfig, lr_at


def test_plain_sgd_schedule_is_constant_from_the_first_step():
    cfg = TrainConfig(lr=0.1, warmup_epochs=0, schedule="constant")
    assert [lr_at(cfg, step, 860) for step in (0, 1, 430 * 110, 860 * 110 - 1)] == [0.1] * 4


def test_default_schedule_warms_up_then_decays_to_zero():
    cfg = TrainConfig()
    assert lr_at(cfg, 0, 860) == pytest.approx(cfg.lr / 860)
    assert lr_at(cfg, 859, 860) == pytest.approx(cfg.lr)
    assert lr_at(cfg, 60 * 860 - 1, 860) < 1e-6


def test_unit_inputs_are_pixels_over_255():
    x = np.array([[0, 51, 255]], np.uint8)
    np.testing.assert_allclose(Standardizer(0.0, 1.0)(x), [[0.0, 0.2, 1.0]], rtol=1e-6)


@pytest.mark.parametrize("bad", [dict(schedule="cosine-restarts"), dict(inputs="minus-one-to-one")])
def test_unknown_choices_are_refused(bad):
    with pytest.raises(ValueError, match="choose one of"):
        TrainConfig(**bad)


def test_no_warm_up_means_the_cosine_starts_at_step_0():
    cfg = TrainConfig(warmup_epochs=0)
    assert lr_at(cfg, 0, 860) == cfg.lr > lr_at(cfg, 1, 860)
