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
    """(images uint8 [N, 28, 28], labels uint8 [N]) for split 'train' or 'test'."""
    ds = DATASETS[name]
    root = data_dir(root)
    prefix = {"train": "train", "test": "t10k"}[split]
    images = read_idx(fetch(ds, root, f"{prefix}-images-idx3-ubyte.gz", download))
    labels = read_idx(fetch(ds, root, f"{prefix}-labels-idx1-ubyte.gz", download))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{name} {split}: {images.shape} images do not match {labels.shape} labels")
    if labels.max(initial=0) >= len(ds.classes):
        raise DataError(f"{name} {split}: label {labels.max()} out of range")
    return images, labels


def train_val_split(images, labels, n_val, seed=0):
    """Hold out a stratification-free, seeded random validation set from the training split."""
    order = np.random.default_rng(seed).permutation(len(labels))
    val, train = order[:n_val], order[n_val:]
    return (images[train], labels[train]), (images[val], labels[val])
