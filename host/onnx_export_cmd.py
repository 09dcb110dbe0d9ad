"""``nnhil export F.npz --out M.onnx``: a quantized model as an ONNX graph of integer ops whose
ONNX Runtime result equals nnhil's integer model bit for bit (training.onnx_export)."""
import logging

from nnhil.training import modelfile, onnx_export

log = logging.getLogger(__name__)

EXAMPLES = """nnhil export out/fashion-mnist-cnn-1a2b3c/quantized.npz --out cnn-int.onnx
python -c "import onnxruntime as o, numpy as np; s = o.InferenceSession('cnn-int.onnx'); \\
           print(s.run(None, {'pixels': np.zeros((1, 1, 28, 28), np.uint8)})[0])"
"""


def add_arguments(p):
    p.add_argument("model", help="a quantized model file (quantized.npz)")
    p.add_argument("--out", required=True, metavar="FILE", help="the ONNX file to write: uint8 'pixels' in, int32 'logits' out")


def run(model_path, out):
    model = modelfile.load_quantized(model_path)
    onnx_export.export(model, out)
    log.info(f"wrote {out}: input 'pixels' uint8 [N, {', '.join(map(str, model.input_shape))}], output 'logits' "
        f"int32 [N, {model.n_out}], opset {onnx_export.OPSET}; ONNX Runtime gives IntModel.logits bit for bit")
    return 0
