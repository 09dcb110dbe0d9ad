"""The README's larger MLP reaches its float accuracy target on the full Fashion-MNIST test set."""
import dataclasses

import pytest

from nnhil.training import workflow
from nnhil.training.train import TrainConfig

LARGE = dataclasses.replace(TrainConfig(), layers=(784, 512, 256, 10), dropout=0.2, seed=0)
# Float / integer % (tests/benchmarks/seed_table.py --models large-mlp; numpy 2.4.6, OpenBLAS 0.3.31
# on one thread, AMD EPYC, 2026-12-07): SkylakeX seeds 0-4 90.66/90.65  90.56/90.55  90.58/90.56
# 90.56/90.54  90.68/90.71, Haswell seed 0 90.54/90.59. Float: worst 90.54, spread 14 test images,
# another CPU kind 37 (docs/accuracy.md's rule): at most 90.03%; the target leaves 53 images more.
FLOAT_TARGET = 0.895


@pytest.mark.slow
def test_large_mlp_meets_its_target(fashion, tmp_path):
    metrics = workflow.train_and_quantize(LARGE, fashion, tmp_path)
    assert metrics["float_test_accuracy"] >= FLOAT_TARGET
    assert metrics["int_test_accuracy"] >= metrics["float_test_accuracy"] - 0.005
