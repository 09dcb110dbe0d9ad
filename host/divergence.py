"""Where the board and the integer model part: the first diverging layer, channel and position.

A batch whose logits differ says only that. :func:`trace` reruns one image layer by layer on
the DUT (a run stopped after each layer, host.driver's run_layers), compares every layer's
on-board output with the integer model's (gateware.program.layer_outputs) and gives a
:class:`Report`: the first diverging layer (index, kind, shape), how many of its values
differ, the first differing (channel, row, column) or neuron with the expected and measured
values, each layer's cycles against the cycle model, and a PNG heatmap of the differences per
channel. :func:`explain` traces the first :data:`TRACED_IMAGES` differing images of a batch
and lists the others; ``nnhil run`` and the pytest plugin show what it says.
"""
import dataclasses
from pathlib import Path

import numpy as np

from nnhil.gateware import program
from nnhil.training.plots import pyplot

TRACED_IMAGES = 3           # a failing run traces at most this many images layer by layer
LISTED_IMAGES = 50          # and lists at most this many differing images by index


@dataclasses.dataclass(frozen=True)
class LayerDiff:
    """One accelerator layer (a max-pool fused into its conv) on the board and in the model."""
    index: int
    kind: str                   # "conv 2x2 (1,28,28)->16 + pool", "dense 64->10 (logits)"
    expected: np.ndarray        # the integer model's output: (C, H, W) of a conv, (n,) of a dense layer
    measured: np.ndarray        # the board's, the same shape
    cycles: int                 # of the run stopped after this layer
    model_cycles: int           # what the cycle model says that run takes

    @property
    def shape(self):
        return self.expected.shape

    @property
    def differs(self):
        """Per value: the board's differs from the model's."""
        return self.measured != self.expected

    @property
    def n_differ(self):
        return int(self.differs.sum())

    @property
    def first(self):
        """Index of the first differing value in (channel, row, column) order, or None."""
        where = np.argwhere(self.differs)
        return tuple(int(v) for v in where[0]) if len(where) else None

    def where(self, index):
        """'channel 5, row 3, column 0' or 'neuron 17'."""
        if len(index) == 1:
            return f"neuron {index[0]}"
        return ", ".join(f"{name} {v}" for name, v in zip(("channel", "row", "column"), index))

    @property
    def channels(self):
        """{channel (or neuron): differing values in it}, in channel order."""
        per = self.differs.reshape(len(self.expected), -1).sum(axis=1)
        return {int(c): int(per[c]) for c in np.flatnonzero(per)}


@dataclasses.dataclass
class Report:
    """One image traced layer by layer."""
    image_index: int | None
    layers: list
    heatmap: Path | None = None

    @property
    def first(self):
        """The first layer whose output differs, or None."""
        return next((d for d in self.layers if d.n_differ), None)

    @property
    def cycles_exact(self):
        return all(d.cycles == d.model_cycles for d in self.layers)

    def text(self):
        name = "image" if self.image_index is None else f"image {self.image_index}"
        d, n = self.first, len(self.layers)
        if d is None:
            lines = [f"{name}: every layer's on-board output equals the integer model's ({n} layers)"]
        else:
            at = d.first
            channels = d.channels
            listed = ", ".join(f"{c} ({v})" for c, v in list(channels.items())[:8])
            more = f" and {len(channels) - 8} more" if len(channels) > 8 else ""
            lines = [f"{name}: layer {d.index} of {n} diverges first: {d.kind}, output {d.shape}",
                     f"  {d.n_differ} of {d.expected.size} values differ; the first at {d.where(at)}: "
                     f"expected {int(d.expected[at])}, measured {int(d.measured[at])}",
                     f"  {'neurons' if len(d.shape) == 1 else 'channels'} that differ (values): "
                     f"{listed}{more}"]
        width = max(len(x.kind) for x in self.layers)
        for x in self.layers:
            verdict = "exact" if not x.n_differ else f"{x.n_differ} differ"
            cycles = f"{x.cycles} cycles " + ("as modelled" if x.cycles == x.model_cycles else
                                              f"(DIFFERS: the cycle model says {x.model_cycles})")
            lines.append(f"  layer {x.index}  {x.kind:<{width}}  {str(x.shape):<14} {verdict:<12} {cycles}")
        if self.heatmap:
            lines.append(f"  heatmap of layer {d.index}'s differences per channel: {self.heatmap}")
        return "\n".join(lines)


def compare(compiled, image, runs, image_index=None):
    """The Report of one uint8 image from its on-board layer outputs (host.results.LayerRun)
    of a gateware.compiled.CompiledModel."""
    expected = program.layer_outputs(compiled.model, image[None])
    shapes = compiled.shapes
    layers = []
    for k, (shape, ref, run) in enumerate(zip(shapes, expected, runs)):
        kind = str(shape) + (" (logits)" if k == len(shapes) - 1 else "")
        layers.append(LayerDiff(k, kind, ref[0], run.values.reshape(ref[0].shape), run.cycles,
                                compiled.cycles_after(k + 1)))
    return Report(image_index, layers)


def heatmap(diff, path, title):
    """measured - expected of one layer: a panel per channel (a conv), or per neuron (dense)."""
    delta = diff.measured.astype(np.int64) - diff.expected.astype(np.int64)
    scale = max(1, int(np.abs(delta).max()))
    plt = pyplot()
    if delta.ndim == 1:
        fig, ax = plt.subplots(figsize=(7, 2.6))
        ax.bar(np.arange(len(delta)), delta, color=np.where(delta > 0, "tab:red", "tab:blue"))
        ax.set_xlabel("neuron")
        ax.set_ylabel("measured - expected")
    else:
        c = len(delta)
        cols = int(np.ceil(np.sqrt(c)))
        rows = -(-c // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols + 1, 1.3 * rows + 0.6), squeeze=False)
        for ch, ax in enumerate(axes.flat):
            ax.set_axis_off()
            if ch < c:
                im = ax.imshow(delta[ch], cmap="RdBu_r", vmin=-scale, vmax=scale)
                ax.set_title(f"ch {ch}" + ("*" if delta[ch].any() else ""), fontsize=7)
        fig.colorbar(im, ax=axes, shrink=0.8, label="measured - expected")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def trace(dut, image, image_index=None, out_dir=None):
    """Rerun one image layer by layer on ``dut`` (its loaded model) and compare each layer.

    With ``out_dir``, writes trace-<index>.npz (every layer's board and model outputs and
    cycles), trace-<index>.txt (the report) and, when a layer differs, trace-<index>.png.
    """
    report = compare(dut.compiled, image, dut.layer_outputs(image), image_index)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = out_dir / f"trace-{'image' if image_index is None else image_index}"
        arrays = {}
        for d in report.layers:
            arrays.update({f"board_{d.index}": d.measured, f"model_{d.index}": d.expected})
        np.savez_compressed(stem.with_suffix(".npz"), image=image, **arrays,
                            cycles=[d.cycles for d in report.layers],
                            model_cycles=[d.model_cycles for d in report.layers])
        if report.first is not None:
            report.heatmap = stem.with_suffix(".png")
            d = report.first
            heatmap(d, report.heatmap, f"image {image_index}, layer {d.index} ({d.kind}): "
                                       f"{d.n_differ} of {d.expected.size} values differ")
        stem.with_suffix(".txt").write_text(report.text() + "\n")
    return report


def explain(dut, images, results, out_dir=None, traced=TRACED_IMAGES):
    """What a batch's mismatch is: the differing images by index and the layer-by-layer
    report of the first ``traced`` of them (the model loaded on ``dut``; results a Results)."""
    bad = np.flatnonzero(~results.exact(dut.model, images))
    if not bad.size:
        return f"all {len(images)} images equal the integer model"
    listed = ", ".join(map(str, bad[:LISTED_IMAGES])) + (f" and {bad.size - LISTED_IMAGES} more"
                                                          if bad.size > LISTED_IMAGES else "")
    lines = [f"{bad.size} of {len(images)} images differ from the integer model: {listed}",
             f"traced layer by layer: {', '.join(map(str, bad[:traced]))}"]
    ref = dut.model.logits(images[bad[:traced]])
    for i, row in zip(bad[:traced], ref):
        lines.append(f"  logits of image {i}: board {results.logits[i].tolist()}, model {row.tolist()}")
    lines += [trace(dut, images[i], int(i), out_dir).text() for i in bad[:traced]]
    return "\n".join(lines)
