"""The README's larger MLP reaches its float accuracy target on the full Fashion-MNIST test set."""
import dataclasses

import pytest

from nnhil.training import workflow
from nnhil.training.train import TrainConfig

LARGE = dataclasses.replace(TrainConfig(), layers=(784, 512, 256, 10), dropout=0.2, seed=0)
# Not measured at several seeds yet (tests/benchmarks/seed_table.py --models large-mlp; about 15
# minutes a seed on the project's loaded 2-core machine): the README has 90.5% float at seed 0. Until
# it is, the target assumes the seed spread and CPU difference of the other MLPs measured
# (docs/accuracy.md: up to 44 + 13 test images) and that seed 0 may not be the worst: 89.5%.
FLOAT_TARGET = 0.895


@pytest.mark.slow
def test_large_mlp_meets_its_target(fashion, tmp_path):
    metrics = workflow.train_and_quantize(LARGE, fashion, tmp_path)
    assert metrics["float_test_accuracy"] >= FLOAT_TARGET
    assert metrics["int_test_accuracy"] >= metrics["float_test_accuracy"] - 0.005
