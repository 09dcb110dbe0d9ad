"""``nnhil report``: latency and accuracy history as PNG plots and a short Markdown report."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import history  # noqa: E402

LATENCY = (("accelerator_cycles", "accelerator cycles / inference"),
           ("batch_cycles_per_image", "cycles / image with the driver"),
           ("cpu_cycles_per_inference", "CPU cycles / inference"))
ACCURACY = (("board_accuracy", "on-board"), ("software_int_accuracy", "software integer"),
            ("float_test_accuracy", "float"))


def _series(records, key):
    pts = [(i, r[key]) for i, r in enumerate(records) if r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_history(records, path):
    fig, axes = plt.subplots(1, len(LATENCY) + 1, figsize=(16, 3.8))
    for ax, (key, title) in zip(axes, LATENCY):
        x, y = _series(records, key)
        ax.plot(x, y, "o-")
        ax.set_title(title)
        ax.set_xlabel("run")
    ax = axes[-1]
    for key, label in ACCURACY:
        x, y = _series(records, key)
        ax.plot(x, y, "o-", label=label)
    ax.set_title("test accuracy")
    ax.set_xlabel("run")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(out_dir, path=history.HISTORY):
    records = history.read(path)
    if not records:
        raise RuntimeError(f"no runs in {path}: run 'nnhil demo' or the test suite first")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_history(records, out_dir / "history.png")
    last = records[-1]
    rows = "\n".join(f"| {k} | {last[k]} |" for k in sorted(last) if k not in ("kind",))
    lines = ["# nnhil report", "", f"{len(records)} runs in `{path}`; the latest ({last['kind']}):", "",
             "| figure | value |", "| --- | --- |", rows, "",
             "![latency and accuracy history](history.png)", ""]
    if last.get("confusion_png"):
        lines += [f"![on-board confusion matrix]({Path(last['confusion_png']).resolve()})", ""]
    (out_dir / "report.md").write_text("\n".join(lines))
    return out_dir / "report.md"
