"""Fashion-MNIST and MNIST from their official gzip IDX files, checksum-verified.

The data directory comes from ``--data-dir`` or ``$NNHIL_DATA_DIR``. It may hold the
files directly or in a ``fashion-mnist/`` / ``mnist/`` subfolder. Missing files are
downloaded from the official mirror when allowed; every file is checked against the
official sha256 before it is parsed, so a corrupt or truncated file never trains a model.
"""
import gzip
import hashlib
import os
import struct
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import home

DATA_DIR_ENV = "NNHIL_DATA_DIR"


@dataclass(frozen=True)
class Dataset:
    name: str
    mirror: str
    sha256: dict          # file name -> sha256 of the .gz file
    classes: tuple


FASHION_MNIST = Dataset(
    name="fashion-mnist",
    mirror="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    sha256={
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)

MNIST = Dataset(
    name="mnist",
    mirror="https://ossci-datasets.s3.amazonaws.com/mnist/",
    sha256={
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    classes=tuple(str(d) for d in range(10)),
)

DATASETS = {d.name: d for d in (FASHION_MNIST, MNIST)}
IDX_DTYPES = {0x08: np.uint8}


class DataError(RuntimeError):
    """A data file is missing, corrupt or malformed; the message says what to do."""


def data_dir(explicit=None):
    """The data directory: the explicit argument, then $NNHIL_DATA_DIR, then a user cache."""
    return Path(explicit or os.environ.get(DATA_DIR_ENV) or home.root() / "data").expanduser()


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _locate(ds, root, fname):
    for candidate in (root / ds.name / fname, root / fname):
        if candidate.exists():
            return candidate
    return None


def _download(ds, root, fname):
    dest = root / ds.name / fname
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = ds.mirror + fname
    print(f"downloading {url}", file=sys.stderr)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            while block := r.read(1 << 20):
                f.write(block)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DataError(f"could not download {url}: {e}. Download it by hand into "
                        f"{dest.parent} or point --data-dir / ${DATA_DIR_ENV} at a copy") from e
    tmp.replace(dest)
    return dest


def fetch(ds, root, fname, download=True):
    """Path of a verified data file, downloading it if missing and allowed."""
    expected = ds.sha256[fname]
    path = _locate(ds, root, fname)
    if path is None:
        if not download:
            raise DataError(f"{fname} ({ds.name}) not found in {root} or {root / ds.name}; "
                            f"set --data-dir or ${DATA_DIR_ENV} to the folder holding it, "
                            f"or allow downloading")
        path = _download(ds, root, fname)
        actual = sha256_of(path)
        if actual != expected:
            path.unlink()      # ours to remove: a bad download must not poison the next run
            raise DataError(f"the download of {ds.mirror}{fname} is corrupt or truncated "
                            f"(sha256 {actual}, expected {expected}); try again later")
        return path
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(f"{path} is corrupt or truncated ({path.stat().st_size} bytes, "
                        f"sha256 {actual}, expected {expected}); delete it and download "
                        f"the official file again from {ds.mirror}{fname}")
    return path


def read_idx(path):
    """Parse a gzip IDX file into a NumPy array, validating its header against its size."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path} is not a readable gzip file ({e}); replace it with the official file") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DataError(f"{path} does not start with an unsigned-byte IDX magic number")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header truncated")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(f"{path}: IDX header says shape {shape} ({int(np.prod(shape))} bytes) "
                        f"but {len(raw) - header} bytes follow")
    return np.frombuffer(raw, dtype=IDX_DTYPES[raw[2]], offset=header).reshape(shape)


def load_split(name, split, root=None, download=True):
    """(images uint8 [N, 28, 28], labels uint8 [N]) for split 'train' or 'test'.

    The official IDX files when the data directory has them; otherwise the Kaggle CSV layout
    (``fashion-mnist_test.csv``, ``mnist_train.csv``, ...) when it has that; otherwise a download."""
    ds = DATASETS[name]
    root = data_dir(root)
    prefix = {"train": "train", "test": "t10k"}[split]
    csv = _locate(ds, root, f"{name}_{split}.csv")
    if csv is not None and _locate(ds, root, f"{prefix}-images-idx3-ubyte.gz") is None:
        images, labels = read_csv(csv, CSV_PIXELS, len(ds.classes), labels=True)
        return images.reshape(-1, 28, 28), labels
    images = read_idx(fetch(ds, root, f"{prefix}-images-idx3-ubyte.gz", download))
    labels = read_idx(fetch(ds, root, f"{prefix}-labels-idx1-ubyte.gz", download))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{name} {split}: {images.shape} images do not match {labels.shape} labels")
    if labels.max(initial=0) >= len(ds.classes):
        raise DataError(f"{name} {split}: label {labels.max()} out of range")
    return images, labels


CSV_PIXELS = 28 * 28


def _csv_header(first, n_pixels):
    """None for a row of numbers; else whether the header names a label column, checked strictly."""
    fields = [f.strip().strip('"') for f in first.split(",")]
    if all(f.lstrip("-").isdigit() for f in fields):
        return None
    pixels = [f"pixel{i}" for i in range(1, n_pixels + 1)]
    if fields == ["label"] + pixels:
        return True
    if fields == pixels:
        return False
    raise DataError(f"line 1: a header of {len(fields)} columns starting {fields[:3]}; expected "
                    f"'label,pixel1,...,pixel{n_pixels}' (the Kaggle layout) or 'pixel1,...,pixel{n_pixels}'")


def read_csv(path, n_pixels=CSV_PIXELS, n_classes=None, labels=None):
    """(images uint8 [N, n_pixels], labels uint8 [N] or None) of a CSV in the Kaggle layout:
    an optional header, then one image a row, ``label,pixel1,...`` or the pixels alone.

    labels: True requires a label column, False forbids one, None takes what the file has.
    Every row is checked (its length, integer fields, pixels 0-255, labels below n_classes) and
    an error names the first bad line (counting the header as line 1).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read it as a text CSV file ({e})") from None
    lines = text.splitlines()
    if not lines:
        raise DataError(f"{path}: empty file; expected a header and one image per line")
    header = _csv_header(lines[0], n_pixels)
    first = 0 if header is None else 1
    rows = lines[first:]
    while rows and not rows[-1].strip():
        rows.pop()
    if not rows:
        raise DataError(f"{path}: no images after the header")
    width = rows[0].count(",") + 1 if header is None else n_pixels + header
    if width not in (n_pixels, n_pixels + 1):
        raise DataError(f"{path}: line {first + 1} has {width} columns; expected {n_pixels} pixels, "
                        f"with or without a label column before them ({n_pixels + 1})")
    has_labels = width == n_pixels + 1
    if labels is not None and has_labels != labels:
        raise DataError(f"{path}: rows of {width} columns, so {'a' if has_labels else 'no'} label column; "
                        f"expected {'label,' if labels else ''}pixel1,...,pixel{n_pixels}")
    for i, row in enumerate(rows):
        if row.count(",") + 1 != width:
            raise DataError(f"{path}: line {first + i + 1} has {row.count(',') + 1} columns, the file's rows {width}")
    try:
        data = np.loadtxt(rows, delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError:
        for i, row in enumerate(rows):
            if not all(f.strip().lstrip("-").isdigit() for f in row.split(",")):
                raise DataError(f"{path}: line {first + i + 1} holds a field that is not an integer") from None
        raise
    pixels = data[:, 1:] if has_labels else data
    bad = np.flatnonzero(((pixels < 0) | (pixels > 255)).any(axis=1))
    if len(bad):
        raise DataError(f"{path}: line {first + bad[0] + 1} has a pixel outside 0-255 "
                        f"({int(pixels[bad[0]][(pixels[bad[0]] < 0) | (pixels[bad[0]] > 255)][0])})")
    lab = None
    if has_labels:
        lab = data[:, 0]
        top = n_classes if n_classes is not None else 256
        bad = np.flatnonzero((lab < 0) | (lab >= top))
        if len(bad):
            raise DataError(f"{path}: line {first + bad[0] + 1} has label {int(lab[bad[0]])}; labels are "
                            f"0 to {top - 1}")
        lab = lab.astype(np.uint8)
    return pixels.astype(np.uint8), lab


def train_val_split(images, labels, n_val, seed=0):
    """Hold out a stratification-free, seeded random validation set from the training split."""
    order = np.random.default_rng(seed).permutation(len(labels))
    val, train = order[:n_val], order[n_val:]
    return (images[train], labels[train]), (images[val], labels[val])
