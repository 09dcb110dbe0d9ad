"""Backprop, loss and training behaviour of the NumPy MLP."""
import numpy as np
import pytest

from nnhil.training.mlp import MLP, cross_entropy, log_softmax
from nnhil.training.train import TrainConfig, lr_at, sgd_step, smoothed_targets, train


def _loss(model, x, t):
    return cross_entropy(model.forward(x)[0].astype(np.float64), t)[0]


@pytest.mark.parametrize("sizes", [(7, 5, 3), (6, 4, 5, 3), (4, 3)])
def test_gradients_match_numerical(sizes):
    rng = np.random.default_rng(1)
    model = MLP(sizes, seed=2)
    model.weights = [w.astype(np.float64) for w in model.weights]
    model.biases = [b.astype(np.float64) + rng.normal(0, 0.1, b.shape) for b in model.biases]
    x = rng.normal(size=(8, sizes[0]))
    t = smoothed_targets(rng.integers(0, sizes[-1], 8), sizes[-1], 0.1).astype(np.float64)
    logits, cache = model.forward(x)
    _, d = cross_entropy(logits, t)
    gw, gb = model.backward(d.astype(np.float64), cache)
    eps = 1e-6
    for params, grads in ((model.weights, gw), (model.biases, gb)):
        for p, g in zip(params, grads):
            num = np.zeros_like(p)
            for i in np.ndindex(p.shape):
                old = p[i]
                p[i] = old + eps
                up = _loss(model, x, t)
                p[i] = old - eps
                down = _loss(model, x, t)
                p[i] = old
                num[i] = (up - down) / (2 * eps)
            np.testing.assert_allclose(g, num, rtol=1e-4, atol=1e-7)


def test_softmax_survives_huge_logits():
    z = np.array([[1e30, 0, -1e30], [3e38, 3e38, -3e38]], np.float32)
    logp = log_softmax(z)
    assert np.isfinite(logp).all()
    assert logp[0, 0] == 0 and logp[0, 2] < -1e29
    np.testing.assert_allclose(np.exp(logp[1, :2]), 0.5)
    loss, grad = cross_entropy(z, np.eye(3, dtype=np.float32)[[0, 1]])
    assert np.isfinite(loss) and np.isfinite(grad).all()


def test_dropout_is_inverted_and_keeps_expectation():
    model = MLP((50, 2000, 3), seed=0)
    x = np.abs(np.random.default_rng(0).normal(size=(1, 50))).astype(np.float32)
    clean = model.forward(x)[1][0][1]
    _, (acts, masks) = model.forward(x, dropout=0.25, rng=np.random.default_rng(1))
    kept = masks[0] > 0
    assert set(np.unique(masks[0])) <= {0.0, np.float32(1 / 0.75)}
    assert abs(1 - kept.mean() - 0.25) < 0.03            # the dropped fraction
    np.testing.assert_allclose(acts[1][kept], clean[kept] / 0.75, rtol=1e-5)
    assert abs(acts[1].mean() / clean.mean() - 1) < 0.05  # inverted: same expectation


def _toy_data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(4, 10))
    y = rng.integers(0, 4, n)
    x = (centers[y] + rng.normal(size=(n, 10))).astype(np.float32)
    return x, y


def test_l2_decays_weights_but_not_biases():
    w, b = np.ones((3, 2), np.float32), np.ones(2, np.float32)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    sgd_step([w, b], [np.zeros_like(w), np.zeros_like(b)], [vw, vb], lr=0.1, momentum=0.9, l2=0.5)
    np.testing.assert_allclose(w, 0.95)
    np.testing.assert_allclose(b, 1.0)
    sgd_step([w, b], [np.zeros_like(w), np.zeros_like(b)], [vw, vb], lr=0.1, momentum=0.9, l2=0.0)
    np.testing.assert_allclose(w, 0.95 - 0.9 * 0.05)     # momentum carries the decay on


def test_l2_shrinks_trained_weights():
    x, y = _toy_data()
    norms = {}
    for l2 in (0.0, 0.05):
        cfg = TrainConfig(layers=(10, 16, 4), epochs=10, l2=l2, dropout=0, label_smoothing=0)
        model, _ = train(cfg, x, y, x[:0], y[:0])   # no validation: last epoch
        norms[l2] = sum(float((w ** 2).sum()) for w in model.weights)
    assert norms[0.05] < 0.8 * norms[0.0]


def test_training_is_deterministic_for_a_seed_and_learns():
    x, y = _toy_data()
    cfg = TrainConfig(layers=(10, 16, 4), epochs=3, dropout=0.2, val_size=0)
    a, ha = train(cfg, x, y, x[:100], y[:100])
    b, hb = train(cfg, x, y, x[:100], y[:100])
    for wa, wb in zip(a.params, b.params):
        assert np.array_equal(wa, wb)
    assert ha.loss == hb.loss
    assert ha.val_acc[-1] > 0.9
    c, _ = train(TrainConfig(layers=(10, 16, 4), epochs=3, dropout=0.2, seed=1), x, y,
                 x[:100], y[:100])
    assert not np.array_equal(a.weights[0], c.weights[0])


def _overfitting_data():
    """80 training points of 4 Gaussian classes with 30% of the labels randomised, and 400
    clean validation points drawn apart: a wide MLP learns the classes within three epochs,
    then memorises the noise, and validation accuracy falls (0.85 at epoch 3, 0.75 at the end)."""
    centers = np.random.default_rng(100).normal(0, 1, size=(4, 30))

    def draw(n, seed, noise):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 4, n)
        x = (centers[y] + rng.normal(size=(n, 30))).astype(np.float32)
        flip = rng.random(n) < noise
        y[flip] = rng.integers(0, 4, flip.sum())
        return x, y
    return draw(80, 0, 0.3), draw(400, 1, 0.0)


def test_best_validation_checkpoint_is_kept(monkeypatch):
    (x, y), (xv, yv) = _overfitting_data()
    snapshots = []          # the parameters each epoch's validation sees
    predict = MLP.predict
    def spy(self, x_):
        snapshots.append([p.copy() for p in self.params])
        return predict(self, x_)
    monkeypatch.setattr(MLP, "predict", spy)
    cfg = TrainConfig(layers=(30, 256, 4), epochs=12, batch=16, lr=0.005, dropout=0, l2=0, label_smoothing=0,
                      seed=0)
    model, hist = train(cfg, x, y, xv, yv)
    monkeypatch.undo()
    best = int(np.argmax(hist.val_acc))
    assert len(snapshots) == cfg.epochs and 0 < best < cfg.epochs - 1
    assert hist.val_acc[best] > hist.val_acc[-1] + 0.05          # it peaks, then falls
    for kept, at_best in zip(model.params, snapshots[best]):
        assert np.array_equal(kept, at_best)
    assert not all(np.array_equal(kept, last) for kept, last in zip(model.params, snapshots[-1]))
    assert (model.predict(xv) == yv).mean() == hist.val_acc[best]


def test_lr_schedule_warms_up_then_decays_to_zero():
    cfg = TrainConfig(epochs=10, lr=0.1, warmup_epochs=1)
    lrs = [lr_at(cfg, s, 100) for s in range(1000)]
    assert lrs[0] == pytest.approx(0.001) and max(lrs) == pytest.approx(0.1)
    assert np.argmax(lrs) == 99 and lrs[-1] < 1e-5
    assert all(a >= b for a, b in zip(lrs[99:], lrs[100:]))


def test_rejects_bad_sizes():
    with pytest.raises(ValueError, match="at least two positive"):
        MLP((784,))
    with pytest.raises(ValueError, match="at least two positive"):
        MLP((784, 0, 10))
