"""The numeric format's edges: rounding ties, saturation, negative values, multipliers."""
import numpy as np
import pytest

from nnhil.training import fixedpoint as fx


@pytest.mark.parametrize("acc, mult, shift, expected", [
    (0, 1, 1, 0),
    (1, 1, 1, 1),          # 0.5 rounds up
    (3, 1, 1, 2),          # 1.5 -> 2
    (5, 1, 2, 1),          # 1.25 -> 1
    (6, 1, 2, 2),          # 1.5 -> 2 (tie, half up)
    (-1, 1, 1, 0),         # -0.5 rounds up to 0, and ReLU keeps it there
    (-3, 1, 1, 0),         # negative -> ReLU -> 0
    (510, 1, 1, 255),      # 255 exactly
    (511, 1, 1, 255),      # 255.5 saturates
    (512, 1, 1, 255),
    (fx.ACC_MAX, fx.MULT_MAX, fx.SHIFT_MAX, 1),        # largest product: ~2**47 / 2**47
    (fx.ACC_MAX, fx.MULT_MAX, fx.SHIFT_MAX - 1, 2),    # ~2.5 - tiny rounds to 2
    (fx.ACC_MAX, fx.MULT_MAX, 24, 255),                # saturates, no overflow
    (fx.ACC_MIN, fx.MULT_MAX, fx.SHIFT_MIN, 0),
    (1000, 0, 5, 0),       # a dead neuron
])
def test_requantize_edges(acc, mult, shift, expected):
    assert fx.requantize([acc], [mult], [shift]).tolist() == [expected]


def test_requantize_matches_exact_rational_rounding():
    rng = np.random.default_rng(0)
    acc = rng.integers(-2**31, 2**31, 20000)
    mult = rng.integers(0, 2**16, 20000)
    shift = rng.integers(fx.SHIFT_MIN, fx.SHIFT_MAX + 1, 20000)
    got = fx.requantize(acc, mult, shift)
    from fractions import Fraction
    import math
    for a, m, s, g in zip(acc[:2000], mult[:2000], shift[:2000], got[:2000]):
        exact = math.floor(Fraction(int(a) * int(m), 2 ** int(s)) + Fraction(1, 2))
        assert g == min(max(exact, 0), 255)
    assert got.dtype == np.uint8


@pytest.mark.parametrize("scale", [1e-6, 0.00390625, 0.1, 0.5, 0.999999, 1.0, 3.7, 1000.0])
def test_multiplier_approximates_scale(scale):
    m, s = fx.quantize_multiplier(np.array([scale]))
    assert 2**15 <= m[0] < 2**16 or s[0] == fx.SHIFT_MIN
    assert fx.SHIFT_MIN <= s[0] <= fx.SHIFT_MAX
    assert abs(m[0] / 2.0 ** s[0] - scale) / scale < 2**-15


def test_multiplier_rounding_up_to_next_power_of_two():
    m, s = fx.quantize_multiplier(np.array([1.0 - 2**-20]))
    assert m[0] == 2**15 and s[0] == 15


def test_multiplier_zero_and_bad_scales():
    m, s = fx.quantize_multiplier(np.array([0.0]))
    assert (m[0], s[0]) == (0, 1)
    with pytest.raises(ValueError, match="finite and non-negative"):
        fx.quantize_multiplier(np.array([np.nan]))
    with pytest.raises(ValueError, match="finite and non-negative"):
        fx.quantize_multiplier(np.array([-1.0]))
    with pytest.raises(ValueError, match="too large"):
        fx.quantize_multiplier(np.array([2.0**16]))


def test_accumulator_bound_and_range_check():
    w = np.array([[127, -128, 0], [-128, -128, -128]], np.int8)
    bias = np.array([10, -5], np.int32)
    assert fx.accumulator_bound(w, bias).tolist() == [128 * 255 - 10, 3 * 128 * 255 + 5]
    fx.check_accumulator_range(w, bias)
    with pytest.raises(ValueError, match="beyond the 32-bit range"):
        fx.check_accumulator_range(w, np.array([fx.ACC_MAX, 0], np.int64))
