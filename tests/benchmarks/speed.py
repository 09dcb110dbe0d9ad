"""What the training-speed benchmarks time: one NumPy training epoch, and the BLAS yardstick.

The yardstick is a plain float32 matrix product doing as many FLOPs as the epoch (forward
and the two backward products of every multiply-add), on one BLAS thread. An epoch's time
divided by its yardstick's, both taken in the same run, is a figure of the trainer that
depends little on how fast the machine is; timed as CPU time of one thread, also little on
how busy it is (a shared machine's wall clock mostly measures the other jobs).
`pytorch_side_by_side.py` times PyTorch's epoch on the same machine, the default suite's
guard is bounded by that.
"""
import time

import numpy as np
from threadpoolctl import threadpool_limits

from nnhil.training.cnn import CNNConfig
from nnhil.training.train import TrainConfig, train

CONFIGS = {"mlp": TrainConfig, "cnn": CNNConfig}     # the project's defaults, one epoch each
YARDSTICK_SIZE = 512


def training_flops(arch, images):
    """FLOPs of one training pass over `images`: 3 products of 2 FLOPs per forward MAC."""
    model = CONFIGS[arch]().build_model()
    macs = getattr(model, "macs", None) or sum(w.size for w in model.weights)  # an MLP's MACs
    return 6 * macs * images


def yardstick_seconds(flops):
    """CPU seconds that square float32 products of YARDSTICK_SIZE take to do `flops`, one thread."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, YARDSTICK_SIZE, YARDSTICK_SIZE), dtype=np.float32)
    out = np.empty_like(a)
    products = max(1, round(flops / (2 * YARDSTICK_SIZE ** 3)))
    with threadpool_limits(1, user_api="blas"):
        np.matmul(a, b, out=out)
        t0 = time.process_time()
        for _ in range(products):
            np.matmul(a, b, out=out)
        return time.process_time() - t0


def numpy_epoch(arch, x, y):
    """One epoch of the project's trainer (default configuration of arch) on x, y, no validation."""
    cfg = CONFIGS[arch](epochs=1)
    return train(cfg, x, y, x[:0], y[:0])
