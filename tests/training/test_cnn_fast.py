"""What the fast CNN trainer relies on beyond the gradient checks of test_cnn.py: its fused
conv + pool block against the reference conv and pool, the pool-then-ReLU order, float32
throughout, and the BLAS threads it trains with."""
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from nnhil.training.cnn import (CNN, CNNConfig, conv_backward, conv_forward, conv_pool_backward, conv_pool_forward,
                          pool_backward, pool_forward)
from nnhil.training.train import TrainConfig, train


@pytest.mark.parametrize("c_in,c_out,k,h,w", [(1, 4, 2, 28, 28), (3, 2, 2, 13, 13), (2, 3, 3, 9, 6),
                                               (2, 2, 1, 4, 5)])
def test_conv_pool_equals_conv_then_pool(c_in, c_out, k, h, w):
    """The fused block against the reference conv and pool, forward and backward."""
    rng = np.random.default_rng(c_in * 7 + k)
    x = rng.standard_normal((3, h, w, c_in))
    wt = rng.standard_normal((c_out, c_in, k, k))
    b = rng.standard_normal(c_out)
    out, cache = conv_pool_forward(x, wt, b)
    z, conv_cache = conv_forward(x, wt, b)
    ref, arg = pool_forward(z)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    r = rng.standard_normal(out.shape)
    dz = pool_backward(r, arg, z.shape)
    for got, want in zip(conv_pool_backward(r, cache, x.shape, wt), conv_backward(dz, conv_cache, x.shape, wt)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert conv_pool_backward(r, cache, x.shape, wt, need_dx=False)[0] is None


def test_conv_pool_routes_ties_to_the_first_maximum():
    x = np.array([[1, 5, 5, 0, 9],
                  [5, 2, 5, 5, 9],
                  [0, 0, 7, 7, 9]], np.float64)[None, :, :, None]
    identity = np.ones((1, 1, 1, 1))                      # a 1x1 conv that passes x through
    out, cache = conv_pool_forward(x, identity, np.zeros(1))
    assert out[0, :, :, 0].tolist() == [[5, 5]]
    dx = conv_pool_backward(np.ones_like(out), cache, x.shape, identity)[0][0, :, :, 0]
    assert dx.tolist() == [[0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]


def test_conv_pool_rejects_an_input_too_small():
    with pytest.raises(ValueError, match="a 3x3 conv and a 2x2 pool do not fit a 4x3 input"):
        conv_pool_forward(np.zeros((1, 4, 3, 1)), np.zeros((1, 1, 3, 3)), np.zeros(1))


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
        train(cfg, x, y, x[:0], y[:0])
        after = threadpool_info()
    assert _ThreadProbe.seen == [CNNConfig.blas_threads] * 2
    assert all(p["num_threads"] == caller_threads for p in after if p["user_api"] == "blas")
    assert TrainConfig.blas_threads is None            # the MLP keeps BLAS's own choice
