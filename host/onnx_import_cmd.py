"""``nnhil import MODEL.onnx --out F.npz``: a model from PyTorch, Keras or ONNX Runtime's
quantizer into nnhil's model file (training.onnx_import does the work)."""
import logging
from pathlib import Path

from nnhil.training import datasets, onnx_import

from . import options

log = logging.getLogger(__name__)

EXAMPLES = """nnhil import cnn.onnx --out cnn/float.npz          # a float graph with its Sub/Div standardisation
nnhil quantize cnn/float.npz                       # then calibrate it, as for a model nnhil trained
nnhil import mlp.onnx --input-range 0-1 --out mlp/float.npz    # a graph fed pixel / 255
nnhil import cnn.qdq.onnx --out cnn-qdq/quantized.npz          # quantize_static's QDQ graph: ready to run
nnhil run cnn-qdq/quantized.npz --images 200       # on the SoC, with ONNX Runtime as the oracle"""


def add_arguments(p):
    p.add_argument("onnx", help="the ONNX file (a float graph, or a QDQ graph from quantize_static)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="the model file to write: a float one (float.npz) for a float graph, "
                        "a quantized one (quantized.npz) for a QDQ graph")
    p.add_argument("--input-range", choices=sorted(onnx_import.INPUT_RANGES),
                   help="what the graph's input holds: pixel / 255 (0-1) or the pixel (0-255); needed "
                        "when the graph has no Sub/Div standardisation at its input (default with one: "
                        f"{onnx_import.DEFAULT_RANGE_WITH_STANDARDIZER})")
    options.add_arguments(p, options.Data, only=("dataset",))


def run(onnx_path, out, input_range=None, dataset="fashion-mnist"):
    """Import one file; log what was written and how each layer's scale was mapped."""
    out = Path(out)
    result = onnx_import.import_onnx(onnx_path, out, input_range, dataset,
                                     datasets.DATASETS[dataset].classes if dataset else None)
    for line in result.report:
        log.info(line)
    nxt = (f"next: nnhil quantize {out}" if result.kind == "float" else f"next: nnhil run {out}")
    log.info(f"wrote {out} ({result.kind} model, hash {result.digest[:12]}); {nxt}")
    return 0
