"""Data loading: official checksums, clear errors for missing, truncated and corrupt files."""
import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from nnhil.training import datasets as D


@pytest.fixture(scope="module")
def real_dir():
    """The configured data directory, with both test splits present (downloaded if allowed)."""
    root = D.data_dir()
    D.load_split("fashion-mnist", "test", root)
    D.load_split("mnist", "test", root)
    return root


def _fake_labels(path, labels):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labels)) + bytes(labels))


def test_loads_official_fashion_test_split(real_dir):
    images, labels = D.load_split("fashion-mnist", "test", real_dir, download=False)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10


def test_loads_official_mnist_labels(real_dir):
    path = D.fetch(D.MNIST, real_dir, "t10k-labels-idx1-ubyte.gz", download=False)
    labels = D.read_idx(path)
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_missing_file_names_file_and_remedy(tmp_path):
    with pytest.raises(D.DataError, match=r"t10k-images-idx3-ubyte.gz.*not found.*--data-dir"):
        D.load_split("fashion-mnist", "test", tmp_path, download=False)


def test_truncated_file_names_checksum(real_dir, tmp_path):
    src = D.fetch(D.FASHION_MNIST, real_dir, "t10k-labels-idx1-ubyte.gz", download=False)
    dst = tmp_path / "fashion-mnist" / src.name
    dst.parent.mkdir()
    dst.write_bytes(src.read_bytes()[:-100])
    expected = D.FASHION_MNIST.sha256[src.name]
    with pytest.raises(D.DataError, match=rf"corrupt or truncated.*expected {expected}"):
        D.fetch(D.FASHION_MNIST, tmp_path, src.name, download=False)


def test_flipped_byte_is_rejected(real_dir, tmp_path):
    src = D.fetch(D.FASHION_MNIST, real_dir, "t10k-labels-idx1-ubyte.gz", download=False)
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / src.name).write_bytes(bytes(data))
    with pytest.raises(D.DataError, match="corrupt"):
        D.fetch(D.FASHION_MNIST, tmp_path, src.name, download=False)


def test_flat_layout_is_found(real_dir, tmp_path):
    src = D.fetch(D.FASHION_MNIST, real_dir, "t10k-labels-idx1-ubyte.gz", download=False)
    shutil.copy(src, tmp_path / src.name)
    assert D.fetch(D.FASHION_MNIST, tmp_path, src.name, download=False) == tmp_path / src.name


def test_idx_header_size_mismatch(tmp_path):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">II", 0x801, 10) + bytes(9))
    with pytest.raises(D.DataError, match=r"says shape \(10,\).*9 bytes follow"):
        D.read_idx(path)


def test_idx_bad_magic_and_not_gzip(tmp_path):
    path = tmp_path / "magic.gz"
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">II", 0x0D01, 1) + bytes(1))
    with pytest.raises(D.DataError, match="magic"):
        D.read_idx(path)
    plain = tmp_path / "plain.gz"
    plain.write_bytes(b"not gzip at all")
    with pytest.raises(D.DataError, match="not a readable gzip"):
        D.read_idx(plain)


def test_idx_round_trip(tmp_path):
    _fake_labels(tmp_path / "l.gz", [3, 1, 4, 1, 5])
    assert D.read_idx(tmp_path / "l.gz").tolist() == [3, 1, 4, 1, 5]


def test_env_var_selects_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    assert D.data_dir() == tmp_path
    assert D.data_dir("/elsewhere") == Path("/elsewhere")          # an explicit directory wins
    monkeypatch.delenv(D.DATA_DIR_ENV)
    monkeypatch.setenv("NNHIL_HOME", str(tmp_path / "home"))
    assert D.data_dir() == tmp_path / "home" / "data"                # then nnhil's home
    monkeypatch.delenv("NNHIL_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert D.data_dir() == tmp_path / "cache" / "nnhil" / "data"    # then the user's cache


def test_validation_split_is_disjoint_and_seeded():
    images = np.arange(100, dtype=np.uint8).reshape(100, 1, 1)
    labels = np.arange(100) % 10
    (tr, _), (va, _) = D.train_val_split(images, labels, 20, seed=3)
    (tr2, _), (va2, _) = D.train_val_split(images, labels, 20, seed=3)
    assert len(va) == 20 and len(tr) == 80
    assert not set(tr.ravel()) & set(va.ravel())
    assert np.array_equal(va, va2)


def _mirror(tmp_path, real_dir, mutate=None):
    """A local mirror (file:// URL) serving one real file, optionally damaged."""
    src = D.fetch(D.FASHION_MNIST, real_dir, "t10k-labels-idx1-ubyte.gz", download=False)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = src.read_bytes()
    (mirror / src.name).write_bytes(mutate(data) if mutate else data)
    return D.Dataset("fashion-mnist", mirror.as_uri() + "/", D.FASHION_MNIST.sha256,
                     D.FASHION_MNIST.classes), src.name


def test_missing_file_is_downloaded_and_verified(real_dir, tmp_path):
    ds, name = _mirror(tmp_path, real_dir)
    path = D.fetch(ds, tmp_path / "data", name, download=True)
    assert path == tmp_path / "data" / "fashion-mnist" / name
    assert D.read_idx(path).shape == (10000,)


def test_corrupt_download_is_rejected(real_dir, tmp_path):
    ds, name = _mirror(tmp_path, real_dir, mutate=lambda b: b[:-1])
    with pytest.raises(D.DataError, match="download .* is corrupt or truncated"):
        D.fetch(ds, tmp_path / "data", name, download=True)
    assert not (tmp_path / "data" / "fashion-mnist" / name).exists()


def test_unreachable_mirror_names_the_url(tmp_path):
    ds = D.Dataset("fashion-mnist", (tmp_path / "nowhere").as_uri() + "/", D.FASHION_MNIST.sha256, ())
    with pytest.raises(D.DataError, match="could not download .*nowhere.*--data-dir"):
        D.fetch(ds, tmp_path / "data", "t10k-labels-idx1-ubyte.gz", download=True)
    assert not list((tmp_path / "data").rglob("*.part"))
