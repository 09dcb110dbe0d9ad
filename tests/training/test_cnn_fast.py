"""What the fast CNN trainer relies on beyond the gradient checks of test_cnn.py: the grid
shortcuts between pool and conv, the pool-then-ReLU order, float32 throughout, and the BLAS
threads it trains with."""
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from training.cnn import CNN, CNNConfig, conv_backward, conv_forward, pool_backward, pool_forward
from training.train import TrainConfig, train


@pytest.mark.parametrize("c_in,k", [(1, 2), (3, 2), (2, 3)])
def test_conv_backward_takes_its_gradient_on_the_input_grid(c_in, k):
    """A zero-padded [N,H,W,Co] gradient gives exactly what the [N,Ho,Wo,Co] one gives."""
    rng = np.random.default_rng(c_in + k)
    x = rng.standard_normal((3, 7, 6, c_in))
    w = rng.standard_normal((4, c_in, k, k))
    out, cache = conv_forward(x, w, rng.standard_normal(4))
    r = rng.standard_normal(out.shape)
    grid = np.zeros(x.shape[:3] + (4,))
    grid[:, :out.shape[1], :out.shape[2]] = r
    for a, b in zip(conv_backward(r, cache, x.shape, w), conv_backward(grid, cache, x.shape, w)):
        assert np.array_equal(a, b)


def test_pool_backward_into_a_larger_grid_is_zero_outside():
    rng = np.random.default_rng(3)
    x = rng.permutation(2 * 5 * 7 * 3).reshape(2, 5, 7, 3).astype(np.float32)
    out, arg = pool_forward(x)
    r = rng.standard_normal(out.shape).astype(np.float32)
    exact = pool_backward(r, arg, x.shape)
    grid = pool_backward(r, arg, (2, 6, 8, 3))
    assert np.array_equal(grid[:, :5, :7], exact) and not grid[:, 5:].any() and not grid[:, :, 7:].any()
    assert exact.sum(axis=(1, 2)) == pytest.approx(r.sum(axis=(1, 2)))       # every gradient routed once


def test_cnn_forward_equals_relu_before_pool():
    """The CNN pools before its ReLU (they commute); the quantizer's order gives the same logits."""
    model = CNN((1, 12, 12), (3, 5), 2, (4,), seed=3)
    model.conv_b = [np.full(b.shape, -0.2, np.float32) for b in model.conv_b]   # plenty of negatives
    x = np.random.default_rng(0).standard_normal((6, 144)).astype(np.float32)
    h = x.reshape(6, 1, 12, 12).transpose(0, 2, 3, 1)
    for w, b in zip(model.conv_w, model.conv_b):
        z, _ = conv_forward(h, w, b)
        h, _ = pool_forward(np.maximum(z, 0))
    ref = h.transpose(0, 3, 1, 2).reshape(6, -1) @ model.dense_w[0] + model.dense_b[0]
    np.testing.assert_allclose(model.forward(x)[0], ref, rtol=1e-6, atol=1e-6)


def test_cnn_trains_in_float32():
    model = CNN((1, 8, 8), (2, 3), 2, (5, 3), seed=0)
    x = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)
    logits, cache = model.forward(x, 0.1, np.random.default_rng(2))
    gw, gb = model.backward(np.ones_like(logits), cache)
    assert logits.dtype == np.float32
    assert [g.dtype for g in gw + gb] == [np.float32] * len(gw + gb)
    assert [g.shape for g in gw + gb] == [p.shape for p in model.params]


class _ThreadProbe(CNNConfig):
    """A CNNConfig whose model records the BLAS threads it runs with."""
    seen = []

    def build_model(self):
        model = super().build_model()
        forward = model.forward

        def probed(*args, **kwargs):
            self.seen.append(max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"))
            return forward(*args, **kwargs)
        model.forward = probed
        return model


@pytest.mark.parametrize("caller_threads", [1, 2])
def test_cnn_trains_with_its_own_blas_threads(caller_threads):
    x = np.random.default_rng(0).standard_normal((40, 64)).astype(np.float32)
    y = np.arange(40) % 3
    cfg = _ThreadProbe(layers=(3,), channels=(2,), input_shape=(1, 8, 8), epochs=1, batch=20, val_size=0)
    _ThreadProbe.seen = []
    with threadpool_limits(caller_threads, user_api="blas"):
        train(cfg, x, y, x[:0], y[:0], log=lambda s: None)
        after = threadpool_info()
    assert _ThreadProbe.seen == [CNNConfig.blas_threads] * 2
    assert all(p["num_threads"] == caller_threads for p in after if p["user_api"] == "blas")
    assert TrainConfig.blas_threads is None            # the MLP keeps BLAS's own choice
