"""Fixtures shared by the SoC tests: the small CNN and the images the fault-tracing tests
(test_divergence.py, test_wave.py) corrupt a weight of and trace."""
import numpy as np
import pytest

from tests.gateware import accel_models


@pytest.fixture(scope="module")
def model():
    """conv 3x3 (1,10,10)->6 + pool, conv 2x2 (6,4,4)->8, dense 72->12, dense 12->5 (logits)."""
    return accel_models.cnn(np.random.default_rng(12), (1, 10, 10), [(6, 3, True), (8, 2, False)], [12, 5])


@pytest.fixture(scope="module")
def images(model):
    return np.random.default_rng(5).integers(0, 256, (4, *model.input_shape), dtype=np.int64).astype(np.uint8)
