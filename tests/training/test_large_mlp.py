"""The README's larger MLP reaches its float accuracy target on the full Fashion-MNIST test set."""
import dataclasses

import pytest

from nnhil.training import workflow
from nnhil.training.train import TrainConfig

LARGE = dataclasses.replace(TrainConfig(), layers=(784, 512, 256, 10), dropout=0.2, seed=0)
# Seeds 0-1, float / integer % (tests/benchmarks/seed_table.py --models large-mlp; numpy 2.4.6, OpenBLAS
# 0.3.31 SkylakeX kernel, AMD EPYC, 2026-12-07): 90.66/90.65  90.56/90.55. Float: worst 90.56, spread
# 10 test images, another CPU kind 13: at most 90.33%. With two seeds only, the target leaves room for
# a spread like the headline MLP's (44 images): 89.5%.
FLOAT_TARGET = 0.895


@pytest.mark.slow
def test_large_mlp_meets_its_target(fashion, tmp_path):
    metrics = workflow.train_and_quantize(LARGE, fashion, tmp_path)
    assert metrics["float_test_accuracy"] >= FLOAT_TARGET
    assert metrics["int_test_accuracy"] >= metrics["float_test_accuracy"] - 0.005
