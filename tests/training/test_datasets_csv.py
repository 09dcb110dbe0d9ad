"""The Kaggle CSV layout (header, then label,pixel1..pixel784 per row): read as strictly as the
IDX files, accepted in a data directory and by nnhil run --images-csv. The CSVs are made here."""
import numpy as np
import pytest

from nnhil.training import datasets as D

HEADER = "label," + ",".join(f"pixel{i}" for i in range(1, 785))


def write_csv(path, images, labels=None, header=True):
    rows = []
    if header:
        rows.append(HEADER if labels is not None else HEADER[len("label,"):])
    for i, im in enumerate(images.reshape(len(images), -1)):
        fields = ([str(int(labels[i]))] if labels is not None else []) + [str(int(v)) for v in im]
        rows.append(",".join(fields))
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    images[0] = 255
    images[1] = 0
    return images, rng.integers(0, 10, 7).astype(np.uint8)


@pytest.mark.parametrize("header", [True, False])
def test_reads_labelled_and_unlabelled_csv(tmp_path, sample, header):
    images, labels = sample
    im, lab = D.read_csv(write_csv(tmp_path / "a.csv", images, labels, header), n_classes=10)
    np.testing.assert_array_equal(im.reshape(-1, 28, 28), images)
    np.testing.assert_array_equal(lab, labels)
    im, lab = D.read_csv(write_csv(tmp_path / "b.csv", images, None, header))
    np.testing.assert_array_equal(im.reshape(-1, 28, 28), images)
    assert lab is None


def test_a_data_directory_of_kaggle_csvs_loads_like_the_idx_files(tmp_path, sample):
    images, labels = sample
    write_csv(tmp_path / "fashion-mnist_test.csv", images, labels)
    (tmp_path / "mnist").mkdir()
    write_csv(tmp_path / "mnist" / "mnist_train.csv", images[:3], labels[:3], header=False)
    im, lab = D.load_split("fashion-mnist", "test", tmp_path, download=False)
    assert im.shape == (7, 28, 28) and im.dtype == np.uint8
    np.testing.assert_array_equal(im, images)
    np.testing.assert_array_equal(lab, labels)
    im, lab = D.load_split("mnist", "train", tmp_path, download=False)
    np.testing.assert_array_equal(im, images[:3])
    with pytest.raises(D.DataError, match="train-images-idx3-ubyte.gz.*not found"):
        D.load_split("fashion-mnist", "train", tmp_path, download=False)


def _corrupt(tmp_path, sample, edit):
    images, labels = sample
    path = write_csv(tmp_path / "c.csv", images, labels)
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("edit,message", [
    (lambda ls: ls.__setitem__(3, ls[3] + ",0"), r"line 4 has 786 columns, the file's rows 785"),
    (lambda ls: ls.__setitem__(5, ls[5].rsplit(",", 1)[0]), r"line 6 has 784 columns"),
    (lambda ls: ls.__setitem__(2, ls[2].replace(",", ",256,", 1).rsplit(",", 1)[0]),
     r"line 3 has a pixel outside 0-255 \(256\)"),
    (lambda ls: ls.__setitem__(4, "-1" + ls[4][ls[4].index(","):]), r"line 5 has label -1; labels are 0 to 9"),
    (lambda ls: ls.__setitem__(7, "10" + ls[7][ls[7].index(","):]), r"line 8 has label 10"),
    (lambda ls: ls.__setitem__(6, ls[6].replace(",", ",1.5,", 1).rsplit(",", 1)[0]),
     r"line 7 holds a field that is not an integer"),
    (lambda ls: ls.__setitem__(0, "lbl" + ls[0][5:]), r"line 1: a header .* expected 'label,pixel1"),
], ids=["long-row", "short-row", "pixel-256", "label-negative", "label-10", "not-integer", "bad-header"])
def test_bad_rows_name_their_line(tmp_path, sample, edit, message):
    with pytest.raises(D.DataError, match=message):
        D.read_csv(_corrupt(tmp_path, sample, edit), n_classes=10)


def test_label_column_required_or_forbidden(tmp_path, sample):
    images, labels = sample
    with pytest.raises(D.DataError, match="no label column"):
        D.read_csv(write_csv(tmp_path / "u.csv", images), labels=True)
    with pytest.raises(D.DataError, match="a label column"):
        D.read_csv(write_csv(tmp_path / "l.csv", images, labels), labels=False)
    (tmp_path / "e.csv").write_text(HEADER + "\n")
    with pytest.raises(D.DataError, match="no images after the header"):
        D.read_csv(tmp_path / "e.csv")
