"""A multilayer perceptron in vectorised float32 NumPy: forward, backward, prediction.

Hidden layers are ``dense -> ReLU -> dropout``; the output layer is dense, feeding a
numerically stable softmax cross-entropy against soft targets (which covers one-hot
labels, label smoothing and distillation alike).
"""
import numpy as np


class MLP:
    def __init__(self, sizes, seed=0):
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise ValueError(f"an MLP needs at least two positive layer sizes, got {sizes}")
        self.sizes = [int(s) for s in sizes]
        rng = np.random.default_rng(seed)
        # He initialisation: keeps ReLU activations at unit variance layer to layer
        self.weights = [(rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(np.float32)
                        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:])]
        self.biases = [np.zeros(n_out, np.float32) for n_out in self.sizes[1:]]

    @property
    def n_out(self):
        return self.sizes[-1]

    @property
    def params(self):
        return self.weights + self.biases

    def forward(self, x, dropout=0.0, rng=None):
        """Logits, and the cache backward() needs. Dropout is inverted (scaled at train time)."""
        acts, masks = [x], []
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w
            h += b
            if i < len(self.weights) - 1:
                np.maximum(h, 0, out=h)
                if dropout > 0:
                    keep = (rng.random(h.shape, dtype=np.float32) >= dropout)
                    mask = keep * np.float32(1.0 / (1.0 - dropout))
                    h *= mask
                    masks.append(mask)
                else:
                    masks.append(None)
                acts.append(h)
        return h, (acts, masks)

    def backward(self, dlogits, cache):
        """Gradients of the loss for each weight and bias, given d(loss)/d(logits)."""
        acts, masks = cache
        n = len(self.weights)
        gw, gb = [None] * n, [None] * n
        d = dlogits
        for i in reversed(range(n)):
            gw[i] = acts[i].T @ d
            gb[i] = d.sum(axis=0)
            if i > 0:
                d = d @ self.weights[i].T
                if masks[i - 1] is not None:
                    d *= masks[i - 1]
                d *= acts[i] > 0
        return gw, gb

    def logits(self, x, batch=4096):
        return np.concatenate([self.forward(x[i:i + batch])[0] for i in range(0, len(x), batch)])

    def predict(self, x):
        return self.logits(x).argmax(axis=1)


def log_softmax(z):
    """Stable log-softmax: subtracting the row max keeps exp() finite for any logits.

    Computed in float64 so that even logits near the float32 limit stay finite.
    """
    z = z.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def cross_entropy(logits, targets):
    """Mean cross-entropy against target distributions, and its gradient w.r.t. logits."""
    logp = log_softmax(logits)
    loss = -(targets * logp).sum(axis=1).mean()
    grad = (np.exp(logp) - targets) / np.float32(len(logits))
    return float(loss), grad.astype(np.float32, copy=False)
