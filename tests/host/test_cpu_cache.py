"""host.cpu_cache without a SoC: what its key covers, its entries, and concurrent writers.
(tests/soc/test_cpu_cache.py runs it on the simulation.)"""
import multiprocessing

import numpy as np
import pytest

from nnhil.host import cpu_cache
from nnhil.host.firmware_abi import FirmwareError
from nnhil.host.results import Results

RNG = np.random.default_rng(7)
SOC, FIRMWARE, BLOB = "2798118f9532", RNG.integers(0, 256, 300, dtype=np.uint8).tobytes(), bytes(range(200))
IMAGES = RNG.integers(0, 256, (2, 784), dtype=np.uint8)


def flip(data, i=0):
    """``data`` (bytes) with one bit of byte ``i`` changed."""
    b = bytearray(data)
    b[i] ^= 1
    return bytes(b)


def one_pixel(images):
    out = images.copy()
    out[1, 783] ^= 0x80
    return out


def results(n, seed):
    """Results at the edges of their types: int32 logits at both limits, cycles past 32 bits."""
    rng = np.random.default_rng(seed)
    logits = rng.integers(np.iinfo(np.int32).min, np.iinfo(np.int32).max, (n, 10), dtype=np.int32)
    logits[0, :2] = np.iinfo(np.int32).min, np.iinfo(np.int32).max
    return Results(logits=logits, argmax=logits.argmax(1), cycles=np.zeros(n, np.int64),
                   driver_cycles=rng.integers(1 << 20, 1 << 40, n))


def assert_equal(a, b):
    for name in cpu_cache.FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


BASE = dict(soc=SOC, firmware=FIRMWARE, code="optimised", blob=BLOB, images=IMAGES)


@pytest.mark.parametrize("change", [
    dict(soc="cfea77ce434c"),                           # another sim build
    dict(firmware=flip(FIRMWARE, 299)),                 # one bit of the firmware binary
    dict(code="plain"),
    dict(blob=flip(BLOB, 100)),                         # one bit of one weight
    dict(blob=BLOB + bytes(4)),                         # a longer model
    dict(images=one_pixel(IMAGES)),
    dict(images=IMAGES[:1]),                            # fewer images
    dict(images=IMAGES.reshape(1, 1568)),               # the same bytes as one larger image
], ids=["soc", "firmware", "code", "weight", "blob-length", "pixel", "image-count", "image-shape"])
def test_every_input_changes_the_key(change):
    base = cpu_cache.key(**BASE)
    assert cpu_cache.key(**{**BASE, **change}) != base
    assert cpu_cache.key(**BASE) == base                # and the same inputs give the same key
    assert len(base) == 64 and int(base, 16) >= 0


def test_the_parts_are_framed():
    """Bytes moved from one part to the next make another key: each part's length is hashed."""
    assert cpu_cache.key(SOC + "a", b"b" + FIRMWARE, "plain", BLOB, IMAGES) != \
        cpu_cache.key(SOC + "ab", FIRMWARE, "plain", BLOB, IMAGES)


def test_a_code_the_firmware_lacks_is_named():
    with pytest.raises(FirmwareError, match="no CPU inference 'fast': expected one of plain, optimised"):
        cpu_cache.key(**{**BASE, "code": "fast"})


def test_an_entry_round_trips(tmp_path):
    r = results(3, 0)
    path = tmp_path / "cpu-baselines" / "x.npz"
    cpu_cache.store(path, r)
    hit = cpu_cache.load(path)
    assert_equal(hit.results, r)
    assert hit.path == path and hit.cached.startswith("20") and hit.cached.endswith("+00:00")
    assert [p.name for p in path.parent.iterdir()] == ["x.npz"]      # no temporary file left


def test_unreadable_entries_are_misses(tmp_path):
    good = tmp_path / "good.npz"
    cpu_cache.store(good, results(2, 1))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:300])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not an npz")
    foreign = tmp_path / "foreign.npz"                  # an .npz without the entry's fields
    np.savez(foreign, logits=np.zeros((2, 10), np.int32))
    ragged = tmp_path / "ragged.npz"                    # fields of different lengths
    r = results(2, 2)
    np.savez(ragged, written="2026-12-07T00:00:00+00:00", logits=r.logits, argmax=r.argmax[:1],
             cycles=r.cycles, driver_cycles=r.driver_cycles)
    for path in (truncated, garbage, foreign, ragged, tmp_path / "missing.npz"):
        assert cpu_cache.load(path) is None, path.name
    cpu_cache.store(truncated, results(2, 1))           # the next measurement replaces a bad entry
    assert_equal(cpu_cache.load(truncated).results, cpu_cache.load(good).results)


def _writer(path, seed, rounds):
    for _ in range(rounds):
        cpu_cache.store(path, results(50, seed))


def test_concurrent_writers_never_show_a_partial_entry(tmp_path):
    """Writers of one entry (xdist workers, two demos) each put a whole file; a reader meanwhile
    sees none yet or one writer's whole entry, never a mix or a torn file."""
    path = tmp_path / "cpu-baselines" / "entry.npz"
    seeds = [10, 11, 12, 13]
    ctx = multiprocessing.get_context("fork")            # a copy of this process: no imports again
    writers = [ctx.Process(target=_writer, args=(path, seed, 40)) for seed in seeds]
    for w in writers:
        w.start()
    seen = set()
    try:
        while any(w.is_alive() for w in writers):
            hit = cpu_cache.load(path)
            if hit is None:
                assert not path.exists() or not seen, "an entry became unreadable after one was whole"
                continue
            match = [s for s in seeds if (hit.results.logits == results(50, s).logits).all()]
            assert len(match) == 1
            assert_equal(hit.results, results(50, match[0]))
            seen.add(match[0])
    finally:
        for w in writers:
            w.join(60)
    assert all(w.exitcode == 0 for w in writers)
    assert seen and cpu_cache.load(path) is not None
    assert [p.name for p in path.parent.iterdir()] == ["entry.npz"]


def test_describe_names_the_cache_and_when(monkeypatch, tmp_path):
    monkeypatch.setenv("NNHIL_HOME", str(tmp_path))
    text = cpu_cache.describe(["2026-12-07T21:58:03+00:00", "2026-12-07T22:01:40+00:00"], 4)
    assert text == (f"2 of 4 C runs from the cache of {tmp_path / 'cpu-baselines'}, "
                    f"measured 2026-12-07 21:58 to 2026-12-07 22:01 UTC")
