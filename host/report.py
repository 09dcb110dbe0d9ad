"""``nnhil report``: the models side by side, latency and accuracy history, as PNG and Markdown.

Reads the run history (``out/history.jsonl``) and, if ``nnhil resources`` has run, its
estimate (``resources.json`` beside the history). Each model (architecture and dataset) gets its own
series and its own column: the latest demo run of it.
"""
import json
from pathlib import Path

from nnhil.training.plots import pyplot

from . import history

RESOURCES = "resources.json"   # in the output directory, written by 'nnhil resources'
LATENCY = (("accelerator_cycles", "accelerator cycles / inference"),
           ("batch_cycles_per_image", "cycles / image with the driver"),
           ("cpu_optimised_cycles_per_inference", "CPU cycles / inference (optimised C)"),
           ("cpu_plain_cycles_per_inference", "CPU cycles / inference (plain C)"))
ACCURACY = (("board_accuracy", "on-board"), ("float_test_accuracy", "float"))
# the side-by-side table: (record key, row label)
TABLE = (("arch", "architecture"), ("images", "test images"), ("float_test_accuracy", "float accuracy"),
         ("software_int_accuracy", "integer accuracy"), ("board_accuracy", "on-board accuracy"),
         ("bit_exact_images", "bit-exact images"), ("macs", "MACs / inference"),
         ("accelerator_cycles", "accelerator cycles"), ("macs_per_cycle", "MACs / cycle"),
         ("batch_cycles_per_image", "cycles / image with the driver"),
         ("cpu_optimised_cycles_per_inference", "CPU cycles / inference, optimised C"),
         ("cpu_plain_cycles_per_inference", "CPU cycles / inference, plain C"),
         ("speedup_accelerator", "speedup over optimised C (accelerator)"),
         ("speedup_with_driver", "speedup over optimised C (with driver)"),
         ("speedup_plain_with_driver", "speedup over plain C (with driver)"),
         ("weight_words_used", "weight words used"), ("bias_entries_used", "bias entries used"),
         ("act_bytes_used", "activation bytes used"), ("max_layers_used", "program layers"))


def model_of(record):
    """'mlp on fashion-mnist': records from before the CNN have no model field."""
    return f"{record.get('model', 'mlp')} on {record.get('dataset', 'fashion-mnist')}"


def plot_history(records, path):
    models = sorted({model_of(r) for r in records})
    plt = pyplot()
    fig, axes = plt.subplots(1, len(LATENCY) + 1, figsize=(16, 3.8))
    for ax, (key, title) in zip(axes, LATENCY):
        for m in models:
            pts = [(i, r[key]) for i, r in enumerate(records) if model_of(r) == m and r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), "o-", label=m)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("run")
    axes[0].legend(fontsize="small")
    ax = axes[-1]
    for m in models:       # demo runs only: the test suite runs a subset of the test images
        for (key, label), style in zip(ACCURACY, ("o-", "x:")):
            pts = [(i, r[key]) for i, r in enumerate(records)
                   if model_of(r) == m and r.get("kind") == "demo" and r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), style, label=f"{m}: {label}")
    ax.set_title("test accuracy (demo runs)")
    ax.set_xlabel("run")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def latest_demos(records):
    """{model: its latest demo record}."""
    return {model_of(r): r for r in records if r.get("kind") == "demo"}


def side_by_side(records):
    """Markdown table of the latest demo run of each model."""
    latest = latest_demos(records)
    if not latest:
        return ["No demo run yet: run `nnhil demo` (and `nnhil demo --arch cnn`)."]
    cols = sorted(latest)
    lines = ["| | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
    for key, label in TABLE:
        cells = [latest[c].get(key, "") for c in cols]
        cells = [f"{v:.4f}" if isinstance(v, float) and v < 1 else str(v) for v in cells]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def resources_table(path=None):
    path = Path(path)
    if not path.exists():
        return ["No resource estimate yet: run `nnhil resources` (Yosys, a few minutes)."]
    est = json.loads(path.read_text())
    cells = list(dict.fromkeys(c for counts in est["designs"].values() for c in counts))
    lines = [f"Yosys `synth_xilinx` estimate, {est['config']}; one accelerator runs every model.", "",
             "| design | " + " | ".join(cells) + " |", "| --- |" + " --- |" * len(cells)]
    for name, counts in est["designs"].items():
        lines.append(f"| {name} | " + " | ".join(str(counts.get(c, "")) for c in cells) + " |")
    lines.append(f"| {est['device']} | " + " | ".join(str(est["capacity"].get(c, "")) for c in cells) + " |")
    return lines


def write(out_dir, path=None, resources=None):
    path = Path(path or history.default_path())
    records = history.read(path)
    if not records:
        raise RuntimeError(f"no runs in {path}: run 'nnhil demo' or the test suite first")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_history(records, out_dir / "history.png")
    lines = ["# nnhil report", "", f"{len(records)} runs in `{path}`.", "",
             "## Models side by side (latest demo run of each)", "", *side_by_side(records), "",
             "## FPGA resources", "", *resources_table(resources or path.parent / RESOURCES), "",
             "## History", "", "![latency and accuracy history](history.png)", ""]
    for model, r in sorted(latest_demos(records).items()):
        if r.get("confusion_png"):
            lines += [f"![{model} on-board confusion matrix]({Path(r['confusion_png']).resolve()})"]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    return out_dir / "report.md"
