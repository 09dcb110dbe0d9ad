"""Versioned model files: a zip holding ``manifest.json`` and one ``.npy`` per array.

The manifest records the file-format version, the numeric-format version, the layer
shapes and the sha256 of every array, plus a hash of the whole payload that identifies
the model everywhere else (caches, reports, test properties). Loading checks all of it
and says exactly what is wrong; nothing is unpickled. The README's "Model files" section
is the format's specification, for files written by other tools.
"""
import hashlib
import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from . import fixedpoint as fx
from .cnn import CNN
from .intmodel import Conv2D, Dense, IntModel, LAYER_TYPES, MaxPool2D
from .mlp import MLP
from .train import Standardizer

FILE_FORMAT = "nnhil-model"
FILE_VERSION = 2                 # 2: the payload hash spells shapes as "d0,d1,..." (1: Python's repr)
KIND_FLOAT, KIND_QUANTIZED = "float", "quantized"

INT_DTYPES = {"weights": np.int8, "bias": np.int32, "mult": np.uint16, "shift": np.uint8}


class ModelFileError(ValueError):
    """A model file is unreadable or inconsistent; the message names the file and the fault."""


def _npy_bytes(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _digest(arr):
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


# What a damaged file can raise while it is parsed: each becomes a ModelFileError.
PARSE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, struct.error, KeyError,
                IndexError, TypeError, AttributeError, ValueError, EOFError, OSError,
                NotImplementedError, RuntimeError, OverflowError)


def payload_hash(arrays):
    """sha256 over every array in name order: for each, the UTF-8 bytes of
    ``name|dtype|d0,d1,...|`` (numpy's dtype string such as ``|i1`` or ``<i4``, the shape's
    dimensions in decimal), then the array's C-order bytes."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{','.join(map(str, a.shape))}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _expect_type(path, what, value, kind):
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ModelFileError(f"{path}: {what} is a {type(value).__name__}, expected a JSON "
                             f"{ {'dict': 'object', 'list': 'array'}.get(names, names)}")
    return value


def _write(path, manifest, arrays):
    manifest = dict(manifest, format=FILE_FORMAT, version=FILE_VERSION,
                    arrays={n: {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": _digest(a)}
                            for n, a in arrays.items()},
                    payload_sha256=payload_hash(arrays))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
        for name, arr in arrays.items():
            z.writestr(name + ".npy", _npy_bytes(arr))
    tmp.replace(path)      # never leave a half-written model under the real name
    return manifest["payload_sha256"]


def _read(path):
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file; create one with 'nnhil train'")
    try:
        with zipfile.ZipFile(path) as z:
            manifest = _expect_type(path, "the manifest", json.loads(z.read("manifest.json")), dict)
            if manifest.get("format") != FILE_FORMAT:
                raise ModelFileError(f"{path}: not an nnhil model file (format {manifest.get('format')!r})")
            if manifest.get("version") != FILE_VERSION:
                raise ModelFileError(f"{path}: model file version {manifest.get('version')!r}, this "
                                     f"nnhil reads version {FILE_VERSION}; re-export it with 'nnhil quantize'")
            arrays = {}
            for name, info in _expect_type(path, "'arrays'", manifest.get("arrays"), dict).items():
                info = _expect_type(path, f"the entry of array {name}", info, dict)
                with z.open(name + ".npy") as f:
                    arr = np.lib.format.read_array(f, allow_pickle=False)
                if arr.dtype.str != info.get("dtype") or list(arr.shape) != info.get("shape"):
                    raise ModelFileError(f"{path}: array {name} is {arr.dtype.str}{list(arr.shape)}, "
                                         f"manifest says {info.get('dtype')}{info.get('shape')}")
                if _digest(arr) != info.get("sha256"):
                    raise ModelFileError(f"{path}: array {name} is corrupt (sha256 mismatch)")
                arrays[name] = arr
    except ModelFileError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) + PARSE_ERRORS as e:
        raise ModelFileError(f"{path}: corrupt or truncated model file ({type(e).__name__}: {e}); "
                             f"regenerate it with 'nnhil train' or 'nnhil quantize'") from e
    if payload_hash(arrays) != manifest.get("payload_sha256"):
        raise ModelFileError(f"{path}: payload hash does not match the manifest")
    return manifest, arrays


def _check_kind(path, manifest, kind):
    if manifest.get("kind") != kind:
        raise ModelFileError(f"{path}: holds a {manifest.get('kind')} model, expected a {kind} one")


def save_float(path, model, standardizer, meta=None):
    """MLP files hold layer{i}.weights/bias; CNN files the convs first, then the dense layers."""
    arrays = {}
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        arrays[f"layer{i}.weights"], arrays[f"layer{i}.bias"] = w, b
    if isinstance(model, CNN):
        arch = {"arch": "cnn", "cnn": model.config()}
    else:
        arch = {"arch": "mlp", "sizes": model.sizes}
    manifest = dict(arch, kind=KIND_FLOAT,
                    standardizer={"mean": standardizer.mean, "std": standardizer.std},
                    meta=meta or {})
    return _write(path, manifest, arrays)


def _load_float_cnn(path, manifest, arrays):
    try:
        model = CNN(**manifest["cnn"])
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: invalid CNN description {manifest['cnn']} ({e})") from e
    n_conv = len(model.conv_w)
    for i, (w0, b0) in enumerate(zip(model.weights, model.biases)):
        w, b = arrays[f"layer{i}.weights"], arrays[f"layer{i}.bias"]
        if w.shape != w0.shape or b.shape != b0.shape:
            raise ModelFileError(f"{path}: layer {i} has weights {w.shape} and bias {b.shape}, "
                                 f"expected {w0.shape} and {b0.shape} for {manifest['cnn']}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ModelFileError(f"{path}: layer {i} holds NaN or infinite values")
        if i < n_conv:
            model.conv_w[i], model.conv_b[i] = w.astype(np.float32), b.astype(np.float32)
        else:
            model.dense_w[i - n_conv], model.dense_b[i - n_conv] = w.astype(np.float32), b.astype(np.float32)
    if len(arrays) != 2 * len(model.weights):
        raise ModelFileError(f"{path}: holds {len(arrays)} arrays, a {manifest['cnn']} CNN has "
                             f"{2 * len(model.weights)}")
    return model


def load_float(path):
    """(MLP or CNN, Standardizer, meta) from a float model file."""
    manifest, arrays = _read(path)
    _check_kind(path, manifest, KIND_FLOAT)
    try:
        if manifest.get("arch", "mlp") == "cnn":
            model = _load_float_cnn(path, manifest, arrays)
        elif manifest.get("arch", "mlp") != "mlp":
            raise ModelFileError(f"{path}: unknown architecture {manifest['arch']!r}")
        else:
            model = _load_float_mlp(path, manifest, arrays)
        st = Standardizer(**manifest["standardizer"])
    except ModelFileError:
        raise
    except PARSE_ERRORS as e:
        raise ModelFileError(f"{path}: invalid manifest ({type(e).__name__}: {e})") from e
    try:
        valid = bool(np.isfinite([st.mean, st.std]).all() and st.std > 0)
    except PARSE_ERRORS:
        valid = False
    if not valid:
        raise ModelFileError(f"{path}: invalid input standardisation {manifest['standardizer']}")
    return model, st, manifest.get("meta", {})


def _load_float_mlp(path, manifest, arrays):
    sizes = [int(s) for s in manifest["sizes"]]
    model = MLP(sizes)
    for i in range(len(sizes) - 1):
        w, b = arrays[f"layer{i}.weights"], arrays[f"layer{i}.bias"]
        if w.shape != (sizes[i], sizes[i + 1]) or b.shape != (sizes[i + 1],):
            raise ModelFileError(f"{path}: layer {i} has weights {w.shape} and bias {b.shape}, "
                                 f"which do not chain sizes {sizes}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ModelFileError(f"{path}: layer {i} holds NaN or infinite values")
        model.weights[i], model.biases[i] = w.astype(np.float32), b.astype(np.float32)
    return model


def _layer_spec(layer):
    """The manifest entry of a layer (dense entries are unchanged since version 1's MLPs)."""
    if isinstance(layer, Dense):
        return {"type": "dense", "n_in": layer.n_in, "n_out": layer.n_out, "output": layer.output}
    if isinstance(layer, Conv2D):
        return {"type": "conv2d", "in_shape": list(layer.in_shape), "out_channels": layer.c_out,
                "kernel": layer.kernel, "output": layer.output}
    if isinstance(layer, MaxPool2D):
        return {"type": "maxpool2d", "in_shape": list(layer.in_shape), "size": layer.size}
    raise TypeError(f"cannot save a {type(layer).__name__} layer")


def save_quantized(path, model):
    arrays, layers = {}, []
    for i, layer in enumerate(model.layers):
        if not isinstance(layer, MaxPool2D):      # a pool has no arrays
            for name, dtype in INT_DTYPES.items():
                arrays[f"layer{i}.{name}"] = np.asarray(getattr(layer, name)).astype(dtype)
        layers.append(_layer_spec(layer))
    manifest = {"kind": KIND_QUANTIZED, "numeric_format": fx.FORMAT_VERSION,
                "input_shape": list(model.input_shape), "classes": model.classes,
                "layers": layers, "meta": model.meta}
    return _write(path, manifest, arrays)


def load_quantized(path):
    """IntModel from a quantized model file, validated layer by layer."""
    manifest, arrays = _read(path)
    _check_kind(path, manifest, KIND_QUANTIZED)
    if manifest.get("numeric_format") != fx.FORMAT_VERSION:
        raise ModelFileError(f"{path}: numeric format {manifest.get('numeric_format')!r}, this nnhil "
                             f"implements {fx.FORMAT_VERSION}; re-quantize with 'nnhil quantize'")
    try:
        layers = []
        for i, spec in enumerate(_expect_type(path, "'layers'", manifest["layers"], list)):
            spec = _expect_type(path, f"layer {i}", spec, dict)
            cls = LAYER_TYPES.get(spec["type"])
            if cls is None:
                raise ModelFileError(f"{path}: layer {i} has unknown type {spec['type']!r}")
            if cls is MaxPool2D:
                if spec.get("size", 2) != MaxPool2D.size:
                    raise ModelFileError(f"{path}: layer {i} is a {spec['size']}x{spec['size']} "
                                         f"max-pool; only 2x2 is supported")
                if any(k.startswith(f"layer{i}.") for k in arrays):
                    raise ModelFileError(f"{path}: layer {i} is a max-pool but the file holds arrays for it")
                layers.append(MaxPool2D(spec["in_shape"]))
                continue
            parts = {}
            for name, dtype in INT_DTYPES.items():
                arr = arrays[f"layer{i}.{name}"]
                if arr.dtype != dtype:
                    raise ModelFileError(f"{path}: layer {i} {name} is {arr.dtype}, expected {np.dtype(dtype)}")
                parts[name] = arr
            if cls is Conv2D:
                w = parts["weights"]
                if w.ndim != 4 or list(w.shape[:1]) + list(w.shape[2:]) != [spec["out_channels"],
                                                                         spec["kernel"], spec["kernel"]]:
                    raise ModelFileError(f"{path}: layer {i} conv weights are {list(w.shape)}, manifest says "
                                         f"{spec['out_channels']} channels of {spec['kernel']}x{spec['kernel']}")
                layers.append(Conv2D(output=spec["output"], in_shape=spec["in_shape"], **parts))
                continue
            layer = cls(output=spec["output"], **parts)
            if (layer.n_in, layer.n_out) != (spec["n_in"], spec["n_out"]):
                raise ModelFileError(f"{path}: layer {i} arrays are {layer.n_out}x{layer.n_in}, "
                                     f"manifest says {spec['n_out']}x{spec['n_in']}")
            layers.append(layer)
        model = IntModel(layers, manifest["input_shape"], manifest.get("classes"), manifest.get("meta"))
    except ModelFileError:
        raise
    except KeyError as e:
        raise ModelFileError(f"{path}: missing entry {e}") from e
    except PARSE_ERRORS as e:
        raise ModelFileError(f"{path}: invalid layer description ({type(e).__name__}: {e})") from e
    model.hash = manifest["payload_sha256"]
    return model
