"""nnhil: run a quantized neural network on a LiteX SoC, simulated or on a board, and check it bit-exact.

The names below are the supported surface (docs/api.md); they are imported on first use, so
``import nnhil`` (and ``nnhil --version``) stays quick and loads LiteX only when a DUT is opened::

    import nnhil

    model = nnhil.load_model("model.npz")
    with nnhil.open_dut() as dut:           # the Verilator simulation; board_name="arty" for a board
        dut.load(model)
        results = dut.infer(images)         # an nnhil.Results
        assert results.exact(model, images).all()

The modules behind them (``nnhil.training``, ``nnhil.gateware``, ``nnhil.host``) are the
checkout's top-level folders, installed under this package.
"""
import importlib
import importlib.metadata

__version__ = importlib.metadata.version("nnhil")     # pyproject.toml's, the one place it is set

# public name -> (module, attribute)
_EXPORTS = {
    "open_dut": ("nnhil.host.dut", "open_dut"),
    "DUT": ("nnhil.host.dut", "DUT"),
    "BoardNotFound": ("nnhil.host.dut", "BoardNotFound"),
    "ModelFileError": ("nnhil.training.modelfile", "ModelFileError"),
    "IntModel": ("nnhil.training.intmodel", "IntModel"),
    "Dense": ("nnhil.training.intmodel", "Dense"),
    "Conv2D": ("nnhil.training.intmodel", "Conv2D"),
    "MaxPool2D": ("nnhil.training.intmodel", "MaxPool2D"),
    "OUTPUT_U8": ("nnhil.training.fixedpoint", "OUTPUT_U8"),
    "OUTPUT_I32": ("nnhil.training.fixedpoint", "OUTPUT_I32"),
    "Results": ("nnhil.host.results", "Results"),
    "Inference": ("nnhil.host.results", "Inference"),
    "MissingTools": ("nnhil.host.doctor", "MissingTools"),
}
__all__ = ["__version__", "load_model", "save_model", *_EXPORTS]


def load_model(path):
    """The quantized model of the file ``path`` (an :class:`IntModel`), validated layer by layer.

    A file that is not a quantized nnhil model, or is damaged, raises :class:`ModelFileError`
    naming the file and the fault (the format: docs/onnx.md and the README's "Model files")."""
    from nnhil.training import modelfile
    return modelfile.load_quantized(path)


def save_model(path, model):
    """Write ``model`` (an :class:`IntModel`) to ``path`` as a quantized nnhil model file;
    returns the hash of its arrays (the model hash the history and reports record)."""
    from nnhil.training import modelfile
    return modelfile.save_quantized(path, model)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nnhil' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value          # once imported, a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
