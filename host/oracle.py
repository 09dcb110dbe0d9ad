"""ONNX Runtime as an independent oracle for a model imported from ONNX.

``nnhil import`` records the ONNX file's path and sha256 in the model's ``meta["onnx"]``.
``nnhil run`` on such a model runs that same file in ONNX Runtime on the same images and
reports, beside the bit-exact check against nnhil's own integer model: top-1 agreement
between the board and ONNX Runtime, each one's accuracy when there are labels, and for a
QDQ graph the largest logit difference from ONNX Runtime's int8 result, in the graph's real
units. The image fed to ONNX Runtime is what the graph was imported as taking: the pixel
as float32, divided by 255 in float32 for an input range of 0-1.
"""
import logging
from pathlib import Path

import numpy as np

BATCH = 1000                  # images per ONNX Runtime call: bounds the memory of a 10,000-image run

ROUNDING = ("ONNX Runtime requantizes in float (QuantizeLinear rounds half to even) and quantizes "
            "the logits themselves to 8 bits; the accelerator multiplies the int32 accumulator by "
            "mult, adds 2^(shift-1) and shifts (round half up), with mult/2^shift within the "
            "import's reported error of the graph's scale, and takes raw pixels where the graph "
            "quantizes its input")

log = logging.getLogger(__name__)


class OracleUnavailable(RuntimeError):
    """The ONNX file cannot serve as the oracle (moved, changed since the import)."""


def session(path, extra_outputs=()):
    """An ONNX Runtime session on the file, with `extra_outputs` (intermediate tensors) as outputs too."""
    import onnx
    import onnxruntime as ort
    model = onnx.load(str(path))
    have = {o.name for o in model.graph.output}
    for name in extra_outputs:
        if name not in have:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1           # a shared machine: one core, as the reference model takes
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def graph_input(images, info):
    """float32 graph input of uint8 images, as `info` (meta["onnx"]) says the graph takes them."""
    x = np.asarray(images).reshape((len(images),) + tuple(info["input_shape"])).astype(np.float32)
    return x / np.float32(255) if info["input_range"] == "0-1" else x


def run_onnx(info, images):
    """(raw logits, graph output) of ONNX Runtime on uint8 images; checks the file is the imported one."""
    from nnhil.training.onnx_import import sha256_file
    path = Path(info["path"])
    if not path.is_file():
        raise OracleUnavailable(f"{path} (the ONNX file this model was imported from) is gone")
    if sha256_file(path) != info["sha256"]:
        raise OracleUnavailable(f"{path} has changed since the import (sha256 differs); re-import it")
    sess = session(path, [info["logits"]])
    names = [info["logits"], info["output"]]
    parts = [sess.run(names, {info["input"]: graph_input(images[i:i + BATCH], info)})
             for i in range(0, len(images), BATCH)]
    return tuple(np.concatenate([p[k] for p in parts]).reshape(len(images), -1) for k in (0, 1))


def check(job, results):
    """The figures of ``nnhil run`` against ONNX Runtime, for board.json and the history
    (an empty dict for a model not imported from ONNX)."""
    info = job.model.meta.get("onnx")
    if not info:
        return {}
    try:
        logits, output = run_onnx(info, job.images)
    except OracleUnavailable as e:
        log.warning(f"ONNX oracle      skipped: {e}")
        return {"onnx_oracle": f"skipped: {e}"}
    figures = figures_of(info, results.logits, results.argmax, logits, output, job.labels)
    for line in lines(figures):
        log.info(line)
    return figures


def figures_of(info, board_logits, board_argmax, onnx_logits, onnx_output, labels=None):
    """Agreement, accuracies and (QDQ) the largest logit differences, as plain numbers."""
    f = {"onnx_file": info["path"], "onnx_sha256": info["sha256"], "onnx_kind": info["kind"],
         "onnx_images": len(board_argmax),
         "onnx_top1_agreement": float((board_argmax == onnx_logits.argmax(1)).mean())}
    if labels is not None:
        f["onnx_accuracy"] = float((onnx_logits.argmax(1) == labels).mean())
        f["onnx_board_accuracy"] = float((board_argmax == labels).mean())
    if info["kind"] == "qdq":
        real = board_logits.astype(np.float64) * info["logit_scale"]
        f["onnx_logit_scale"] = info["logit_scale"]
        f["onnx_max_logit_diff"] = float(np.abs(real - onnx_logits).max())
        f["onnx_output_top1_agreement"] = float((board_argmax == onnx_output.argmax(1)).mean())
        f["onnx_max_output_diff"] = float(np.abs(real - onnx_output).max())
        q = info.get("logits_quantizer")
        if q:            # the graph's own resolution of its logits: the step of its 8-bit output
            f["onnx_output_step"] = q[0]
            f["onnx_max_logit_diff_output_steps"] = round(f["onnx_max_logit_diff"] / q[0], 2)
    return f


def lines(f):
    """The oracle's lines of ``nnhil run``'s summary."""
    out = [f"ONNX Runtime     {f['onnx_kind']} graph {Path(f['onnx_file']).name}: board top-1 agrees on "
           f"{f['onnx_top1_agreement']:.2%} of {f['onnx_images']} images"
           + (f"; accuracy ONNX Runtime {f['onnx_accuracy']:.4f}, board {f['onnx_board_accuracy']:.4f}"
              if "onnx_accuracy" in f else "")]
    if f["onnx_kind"] == "qdq":
        steps = "onnx_output_step" in f
        out.append(f"                 largest logit difference {f['onnx_max_logit_diff']:.4g} from ONNX Runtime's "
                   f"int8 logits" + (f" ({f['onnx_max_logit_diff_output_steps']} steps of its 8-bit output, "
                                     f"{f['onnx_output_step']:.4g})" if steps else "")
                   + f", {f['onnx_max_output_diff']:.4g} from that output; its top-1 agrees on "
                   f"{f['onnx_output_top1_agreement']:.2%}")
        out.append(f"                 why they differ: {ROUNDING}")
    return out
