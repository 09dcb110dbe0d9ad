"""A small convolutional network in vectorised NumPy: forward, backward, prediction.

The network is ``[conv(k x k, valid, stride 1) -> ReLU -> maxpool 2x2/2] * B -> flatten ->
dense (-> ReLU -> dropout -> dense ...)``. It has the same interface as :class:`MLP`
(``params``, ``forward(x, dropout, rng)``, ``backward(dlogits, cache)``, ``logits``,
``predict``, ``n_out``), so :func:`training.train.train` trains it unchanged.

Inputs are flattened standardised images ``[N, C*H*W]`` in channel-major order (see
:mod:`training.fixedpoint` for the one tensor layout). Internally the conv blocks work in
NHWC, where a kernel tap is a matrix product over channels; the flatten before the first
dense layer goes back to channel-major (C, H, W) order, the same order the integer model and
the hardware use, so dense weights need no permutation when quantized.

Two implementations of a block: the reference conv_forward/pool_forward (and backward), on
which the quantizer calibrates and the gradient checks run, and the trainer's fused
conv_pool_forward/backward, which computes only what the pool reads and avoids strided
element-wise passes (numpy pays per short inner loop, and channels are only 16-32 wide).

Convolution weights are ``[c_out, c_in, k, k]``; dense weights are ``[n_in, n_out]`` as in
the MLP. The functions work in whatever float dtype they are given (float32 for training,
float64 for the gradient checks and the quantizer).
"""
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .intmodel import as_chw
from .train import TrainConfig


# Functional building blocks (NHWC) ---------------------------------------------------------------
# A k x k convolution of an [N, H, W, C] batch is computed on the whole H x W grid of the
# batch flattened to [N*H*W, C] rows: tap (i, j) is the contiguous slice of rows shifted by
# i*W + j, so each tap is one matrix product on the batch as it is (no im2col copy). Grid
# positions outside the valid Ho x Wo output (the last k-1 rows and columns of each image)
# hold values that are never read; gradients there are zero.
def _tap_offsets(k, width):
    """Row shift of each kernel tap (i, j), in (i, j) order, on a grid of the given width."""
    return [i * width + j for i in range(k) for j in range(k)]


def conv_forward(x, w, b):
    """Valid stride-1 convolution (cross-correlation). x [N,H,W,C], w [Co,C,k,k] -> [N,Ho,Wo,Co].

    Returns the output (a view of the H x W grid it was computed on) and the cache for
    conv_backward (the flattened input).
    """
    n, h, wd, c = x.shape
    co, k = w.shape[0], w.shape[2]
    ho, wo = h - k + 1, wd - k + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"a {k}x{k} kernel does not fit a {h}x{wd} input")
    x2 = np.ascontiguousarray(x).reshape(-1, c)
    offs = _tap_offsets(k, wd)
    m = len(x2) - offs[-1]                     # rows every tap can read
    grid = np.empty((len(x2), co), np.result_type(x, w))
    out = grid[:m]
    if c == 1:      # one channel: the k*k shifted rows, stacked, are im2col (column-major): one product
        np.matmul(np.stack([x2[off:off + m, 0] for off in offs]).T, w.reshape(co, -1).T, out=out)
    else:
        taps = w.transpose(2, 3, 1, 0).reshape(k * k, c, co)
        np.matmul(x2[:m], taps[0], out=out)
        for off, wk in zip(offs[1:], taps[1:]):
            out += x2[off:off + m] @ wk
    grid[m:] = 0
    rows = grid.reshape(-1, wd * co)           # a whole grid row at a time: long vector loops
    rows += np.tile(b, wd)
    return grid.reshape(n, h, wd, co)[:, :ho, :wo], x2


def conv_backward(dout, x2, x_shape, w, need_dx=True):
    """Gradients (dx, dw, db) of conv_forward given d(loss)/d(out) [N,Ho,Wo,Co]."""
    n, h, wd, c = x_shape
    co, k = w.shape[0], w.shape[2]
    grid = np.zeros((n, h, wd, co), dout.dtype)
    grid[:, :dout.shape[1], :dout.shape[2]] = dout
    g = grid.reshape(-1, co)
    offs = _tap_offsets(k, wd)
    m = len(g) - offs[-1]
    gm = g[:m]                                 # every valid output position is in these rows
    dw = np.stack([gm.T @ x2[off:off + m] for off in offs], axis=-1).reshape(w.shape)
    db = np.ones(len(g), g.dtype) @ g
    if not need_dx:
        return None, dw, db
    dx = np.zeros((len(g), c), dout.dtype)
    for off, wk in zip(offs, w.transpose(2, 3, 0, 1).reshape(k * k, co, c)):
        dx[off:off + m] += gm @ wk
    return dx.reshape(x_shape), dw, db


def pool_forward(x):
    """2x2 max-pool, stride 2, on [N,H,W,C]; odd trailing rows/columns are dropped (floor).

    Returns the output and, for pool_backward, where each maximum was as float 0/1 masks
    (right column won; bottom row won), taken so that the first maximum in (row, column)
    order wins a tie. Slices and reshapes only: no window copy, no argmax.
    """
    n, h, w, c = x.shape
    ho, wo = h // 2, w // 2
    if ho < 1 or wo < 1:
        raise ValueError(f"a 2x2 max-pool needs at least a 2x2 input, got {h}x{w}")
    v = x[:, :2 * ho, :2 * wo].reshape(n, 2 * ho, wo, 2, c)
    left, right = v[:, :, :, 0], v[:, :, :, 1]
    right_won = np.greater(right, left, out=np.empty(left.shape, x.dtype))
    rows = np.maximum(left, right).reshape(n, ho, 2, wo, c)
    top, bottom = rows[:, :, 0], rows[:, :, 1]
    bottom_won = np.greater(bottom, top, out=np.empty(top.shape, x.dtype))
    return np.maximum(top, bottom), (right_won, bottom_won)


def pool_backward(dout, arg, x_shape):
    """Routes each output's gradient to the one input that won the max (the first on ties)."""
    right_won, bottom_won = arg
    n, ho, wo, c = dout.shape
    rows = np.empty((n, ho, 2, wo, c), dout.dtype)
    np.multiply(dout, bottom_won, out=rows[:, :, 1])
    np.subtract(dout, rows[:, :, 1], out=rows[:, :, 0])
    rows = rows.reshape(n, 2 * ho, wo, c)
    dx = np.zeros(x_shape, dout.dtype)
    v = dx[:, :2 * ho, :2 * wo].reshape(n, 2 * ho, wo, 2, c)
    np.multiply(rows, right_won, out=v[:, :, :, 1])
    np.subtract(rows, v[:, :, :, 1], out=v[:, :, :, 0])
    return dx


# The trainer's block: conv -> 2x2 max-pool, fused ---------------------------------------------
# Only the conv outputs a pool window reads are computed. Their inputs are copied once into a
# window-major im2col matrix [4 * N*Hp*Wp, k*k*C]: row (window position (dy, dx), pooled
# position (n, p, q)), column (tap (i, j), channel c) holds input (n, 2p + dy + i, 2q + dx + j, c).
# One matrix product then gives the four window positions' outputs as four contiguous
# [N*Hp*Wp, Co] blocks, so the pool is three element-wise maxima of contiguous matrices and its
# backward three masks; the backward is two products with the same matrix (dw, d(im2col)).
# The large arrays live in a workspace reused from step to step: allocated afresh, each step
# would page-fault them in again.
_WINDOW = ((0, 0), (0, 1), (1, 0), (1, 1))


def _buffer(work, name, shape, dtype):
    """An uninitialised array; with a workspace dict, the one `name` had last time if it fits."""
    if work is None:
        return np.empty(shape, dtype)
    a = work.get(name)
    if a is None or a.shape != shape or a.dtype != dtype:
        a = work[name] = np.empty(shape, dtype)
    return a


def _window_view(a, k, hp, wp):
    """[2, 2, N, Hp, Wp, k, k, C] view of an [N, H, W, C] array: element (dy, dx, n, p, q, i, j, c)
    is a[n, 2p + dy + i, 2q + dx + j, c] (inputs of tap (i, j) of pool window position (dy, dx))."""
    sn, sh, sw, sc = a.strides
    shape = (2, 2, a.shape[0], hp, wp, k, k, a.shape[3])
    return np.lib.stride_tricks.as_strided(a, shape, (sh, sw, sn, 2 * sh, 2 * sw, sh, sw, sc))


def _kernel_matrix(w):
    """[Co, C, k, k] kernel as the [(i, j, c), Co] matrix the im2col rows multiply."""
    return w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])


def conv_pool_forward(x, w, b, work=None):
    """maxpool2x2(conv(x, w) + b) on [N,H,W,C] (floor pooling), and the cache for backward.

    Equals pool_forward(conv_forward(x, w, b)[0])[0] up to float rounding; the first maximum
    in (row, column) order wins a tie. The bias is added after the pool (a per-channel constant
    commutes with the max), on a quarter of the values. `work` (a dict) keeps the large arrays
    for the next call; the output and the cache are valid until then.
    """
    n, h, wd, c = x.shape
    co, k = w.shape[0], w.shape[2]
    hp, wp = (h - k + 1) // 2, (wd - k + 1) // 2
    if hp < 1 or wp < 1:
        raise ValueError(f"a {k}x{k} conv and a 2x2 pool do not fit a {h}x{wd} input")
    dtype, m = np.result_type(x, w), n * hp * wp
    view = _window_view(x, k, hp, wp)
    if c == 1:      # a row's inputs are then runs of k floats: copy tap by tap instead (column-major)
        cols = _buffer(work, "cols", (k, k, c, 2, 2, n, hp, wp), dtype)
        np.copyto(cols, view.transpose(5, 6, 7, 0, 1, 2, 3, 4))
        cols = cols.reshape(k * k * c, 4 * m).T
    else:
        cols = _buffer(work, "cols", view.shape, dtype)
        np.copyto(cols, view)
        cols = cols.reshape(4 * m, k * k * c)
    z = np.matmul(cols, _kernel_matrix(w), out=_buffer(work, "z", (4 * m, co), dtype))
    tl, tr, bl, br = z.reshape(4, m, co)
    masks = _buffer(work, "masks", (3, m, co), dtype)    # right won (top row, bottom row), bottom won
    np.greater(tr, tl, out=masks[0])
    np.greater(br, bl, out=masks[1])
    top, bottom = np.maximum(tl, tr, out=tl), np.maximum(bl, br, out=bl)
    np.greater(bottom, top, out=masks[2])
    out = np.maximum(top, bottom, out=_buffer(work, "out", (m, co), dtype))
    out += b
    return out.reshape(n, hp, wp, co), (cols, masks)


def conv_pool_backward(dout, cache, x_shape, w, need_dx=True, work=None):
    """Gradients (dx, dw, db) of conv_pool_forward given d(loss)/d(out) [N,Hp,Wp,Co]."""
    cols, (top_right_won, bottom_right_won, bottom_won) = cache
    n, c = x_shape[0], x_shape[3]
    co, k = w.shape[0], w.shape[2]
    hp, wp = dout.shape[1:3]
    m = n * hp * wp
    d = dout.reshape(m, co)
    dz = _buffer(work, "dz", (4, m, co), d.dtype)        # per window position, as z in forward
    tl, tr, bl, br = dz
    np.multiply(d, bottom_won, out=bl)                  # the bottom row's share, then the top's
    np.subtract(d, bl, out=tl)
    np.multiply(tl, top_right_won, out=tr)
    tl -= tr
    np.multiply(bl, bottom_right_won, out=br)
    bl -= br
    dz = dz.reshape(4 * m, co)
    db = np.ones(m, d.dtype) @ d
    dw = (cols.T @ dz).reshape(k, k, c, co).transpose(3, 2, 0, 1)
    if not need_dx:
        return None, dw, db
    dcols = np.matmul(dz, _kernel_matrix(w).T, out=_buffer(work, "dcols", cols.shape, d.dtype))
    dcols = dcols.reshape(2, 2, n, hp, wp, k, k, c)
    dx = _buffer(work, "dx", tuple(x_shape), d.dtype)
    dx.fill(0)
    view = _window_view(dx, k, hp, wp)
    # a kernel row's taps land on distinct inputs while k <= 2 (the pool's stride): one addition
    taps = [slice(None)] if k <= 2 else [slice(j, j + 1) for j in range(k)]
    for dy, dxx in _WINDOW:
        for i in range(k):
            for j in taps:
                view[dy, dxx, :, :, :, i, j] += dcols[dy, dxx, :, :, :, i, j]
    return dx, dw, db


def conv_shapes(input_shape, channels, kernel, pools=None):
    """The (C, H, W) shape after each conv -> ReLU (-> pool) block, and the MACs of each conv.

    kernel: one size for every block, or one per block; pools: whether each block pools
    (default: all do)."""
    kernels = [kernel] * len(channels) if np.ndim(kernel) == 0 else list(kernel)
    pools = [True] * len(channels) if pools is None else list(pools)
    c, h, w = input_shape
    shapes, macs = [], []
    for co, k, pool in zip(channels, kernels, pools):
        ho, wo = h - k + 1, w - k + 1
        if ho < 1 + pool or wo < 1 + pool:
            raise ValueError(f"a {k}x{k} conv{' and a 2x2 pool' if pool else ''} do not fit a {h}x{w} input")
        macs.append(ho * wo * co * c * k * k)
        c, h, w = (co, ho // 2, wo // 2) if pool else (co, ho, wo)
        shapes.append((c, h, w))
    return shapes, macs


class CNN:
    """conv blocks, then dense layers. By default every block pools and has the one `kernel`;
    `kernels` (one per block) and `pools` (a bool per block) describe other block lists, such
    as ONNX graphs imported by training.onnx_import."""

    def __init__(self, input_shape=(1, 28, 28), channels=(16, 32), kernel=2, dense=(10,), seed=0,
                 kernels=None, pools=None):
        self.input_shape = as_chw(input_shape)
        self.channels = tuple(int(c) for c in channels)
        self.kernel = int(kernel)
        self.kernels = tuple(int(k) for k in kernels) if kernels is not None else (self.kernel,) * len(self.channels)
        self.pools = tuple(bool(p) for p in pools) if pools is not None else (True,) * len(self.channels)
        if len(self.kernels) != len(self.channels) or len(self.pools) != len(self.channels):
            raise ValueError(f"kernels {kernels} and pools {pools} need one entry per conv block "
                             f"({len(self.channels)})")
        self.dense = tuple(int(d) for d in dense)
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ValueError(f"input_shape must be (C, H, W) or (H, W), got {input_shape}")
        if not self.channels or min(self.channels) < 1 or min(self.kernels) < 1:
            raise ValueError(f"a CNN needs at least one conv with positive channels and kernel, "
                             f"got channels {channels}, kernel {kernel}")
        if not self.dense or min(self.dense) < 1:
            raise ValueError(f"a CNN needs at least one positive dense size, got {dense}")
        self.block_shapes, self.conv_macs = conv_shapes(self.input_shape, self.channels, self.kernels,
                                                        self.pools)
        rng = np.random.default_rng(seed)
        c_in = self.input_shape[0]
        self.conv_w, self.conv_b = [], []
        for co, k in zip(self.channels, self.kernels):   # He initialisation, fan-in c_in * k * k
            fan_in = c_in * k * k
            self.conv_w.append((rng.standard_normal((co, c_in, k, k)) * np.sqrt(2.0 / fan_in))
                               .astype(np.float32))
            self.conv_b.append(np.zeros(co, np.float32))
            c_in = co
        sizes = [int(np.prod(self.block_shapes[-1]))] + list(self.dense)
        self.dense_w = [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32)
                        for a, b in zip(sizes[:-1], sizes[1:])]
        self.dense_b = [np.zeros(b, np.float32) for b in sizes[1:]]
        self._work = [{} for _ in self.channels]     # each conv block's reused arrays

    def __getstate__(self):            # the workspaces are scratch: copies of the model start empty
        return {k: v for k, v in self.__dict__.items() if k != "_work"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._work = [{} for _ in self.channels]

    # the interface train.train() uses ------------------------------------------------------------
    @property
    def weights(self):
        return self.conv_w + self.dense_w

    @property
    def biases(self):
        return self.conv_b + self.dense_b

    @property
    def params(self):
        return self.weights + self.biases

    @property
    def n_out(self):
        return self.dense[-1]

    @property
    def macs(self):
        sizes = [int(np.prod(self.block_shapes[-1]))] + list(self.dense)
        return sum(self.conv_macs) + sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))

    def config(self):
        """The constructor's arguments; kernels and pools only when they differ from the default
        (so the model files of the default architecture stay as they were)."""
        c = {"input_shape": list(self.input_shape), "channels": list(self.channels),
             "kernel": self.kernel, "dense": list(self.dense)}
        if set(self.kernels) != {self.kernel}:
            c["kernels"] = list(self.kernels)
        if not all(self.pools):
            c["pools"] = list(self.pools)
        return c

    def forward(self, x, dropout=0.0, rng=None):
        """Logits for flattened channel-major inputs [N, C*H*W], and the cache for backward()."""
        c, h, w = self.input_shape
        hcur = x.reshape(len(x), c, h, w).transpose(0, 2, 3, 1)      # NHWC view
        conv_cache = []
        for wt, b, work, pool in zip(self.conv_w, self.conv_b, self._work, self.pools):
            if pool:
                p, cache = conv_pool_forward(hcur, wt, b, work)
            else:                          # a block without a pool (imported graphs)
                p, x2 = conv_forward(hcur, wt, b)
                p, cache = np.ascontiguousarray(p), x2
            np.maximum(p, 0, out=p)        # ReLU after the pool: they commute, on a quarter of the values
            conv_cache.append((cache, hcur.shape, p))
            hcur = p
        flat = hcur.transpose(0, 3, 1, 2).reshape(len(x), -1)        # channel-major flatten
        acts, masks = [flat], []
        hd = flat
        n_dense = len(self.dense_w)
        for i, (wt, b) in enumerate(zip(self.dense_w, self.dense_b)):
            if dropout > 0:                # dropout on every dense layer's input
                keep = rng.random(hd.shape, dtype=np.float32) >= dropout
                mask = keep * np.asarray(1.0 / (1.0 - dropout), hd.dtype)
                hd = hd * mask
                masks.append(mask)
            else:
                masks.append(None)
            acts[-1] = hd
            hd = hd @ wt
            hd += b
            if i < n_dense - 1:
                np.maximum(hd, 0, out=hd)
                acts.append(hd)
        return hd, (conv_cache, acts, masks, hcur.shape)

    def backward(self, dlogits, cache):
        """Gradients (weights, biases) in the order of ``weights`` and ``biases``."""
        conv_cache, acts, masks, pooled_shape = cache
        nd = len(self.dense_w)
        gdw, gdb = [None] * nd, [None] * nd
        d = dlogits
        for i in reversed(range(nd)):
            gdw[i] = acts[i].T @ d
            gdb[i] = d.sum(axis=0)
            d = d @ self.dense_w[i].T
            if masks[i] is not None:
                d *= masks[i]
            if i > 0:
                d *= acts[i] > 0
        n, ho, wo, co = pooled_shape
        d = np.ascontiguousarray(d.reshape(n, co, ho, wo).transpose(0, 2, 3, 1))
        nc = len(self.conv_w)
        gcw, gcb = [None] * nc, [None] * nc
        for i in reversed(range(nc)):
            cache, x_shape, p = conv_cache[i]
            d *= p > 0
            if self.pools[i]:
                d, gcw[i], gcb[i] = conv_pool_backward(d, cache, x_shape, self.conv_w[i], need_dx=i > 0,
                                                       work=self._work[i])
            else:
                d, gcw[i], gcb[i] = conv_backward(d, cache, x_shape, self.conv_w[i], need_dx=i > 0)
        return gcw + gdw, gcb + gdb

    def logits(self, x, batch=1024):
        return np.concatenate([self.forward(x[i:i + batch])[0] for i in range(0, len(x), batch)])

    def predict(self, x):
        return self.logits(x).argmax(axis=1)


@dataclass
class CNNConfig(TrainConfig):
    """Training hyperparameters of :class:`TrainConfig` plus the CNN's shape.

    ``layers`` are the dense layers after the conv blocks (the last one is the classes).
    """
    layers: tuple = (64, 10)
    channels: tuple = (16, 32)
    kernel: int = 2
    input_shape: tuple = (1, 28, 28)
    epochs: int = 15
    seed: int = 0
    batch: int = 64
    lr: float = 0.05
    dropout: float = 0.1
    l2: float = 5e-4
    # One BLAS thread: the conv products are small, and a second thread mostly spins, more so on
    # a busy machine; it also makes a run independent of the machine's thread setting.
    blas_threads: ClassVar[int | None] = 1

    def to_dict(self):
        d = super().to_dict()
        d.update(arch="cnn", channels=list(self.channels), input_shape=list(self.input_shape))
        return d

    def build_model(self):
        return CNN(self.input_shape, self.channels, self.kernel, self.layers, seed=self.seed)
