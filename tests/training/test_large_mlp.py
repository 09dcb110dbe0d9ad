"""The README's larger MLP reaches 90% float accuracy on the full Fashion-MNIST test set."""
import dataclasses

import pytest

from nnhil.training import workflow
from nnhil.training.train import TrainConfig

LARGE = dataclasses.replace(TrainConfig(), layers=(784, 512, 256, 10), dropout=0.2, seed=0)


@pytest.mark.slow
def test_large_mlp_reaches_90_percent(fashion, tmp_path):
    metrics = workflow.train_and_quantize(LARGE, fashion, tmp_path)
    assert metrics["float_test_accuracy"] >= 0.900
    assert metrics["int_test_accuracy"] >= metrics["float_test_accuracy"] - 0.005
