"""Host-side latency on the target, measured with pytest-benchmark.

Save runs with ``--benchmark-autosave`` and compare later ones with
``--benchmark-compare --benchmark-compare-fail=min:25%``; the cycle-exact figures are
checked by the latency baselines in test_inference.py.
"""
import pytest

pytestmark = pytest.mark.board


@pytest.fixture(scope="module")
def loaded(accelerator, headline):
    model, _ = headline
    accelerator.load(model)
    return model


def test_single_image_round_trip(benchmark, accelerator, loaded, fashion):
    """Write one image, start, poll, read the logits, argmax and cycles: one host round trip."""
    image = fashion.test[0][0]
    out = benchmark(accelerator.infer, image)
    assert out.argmax == int(loaded.logits(image[None])[0].argmax())


def test_batch_throughput(benchmark, firmware, loaded, fashion):
    """300 images through main RAM and the firmware's batch runner, results read back."""
    images = fashion.test[0][:300]
    r = benchmark.pedantic(firmware.accel_batch, args=(len(loaded.layers), loaded.n_out, images),
                           rounds=3, iterations=1)
    benchmark.extra_info["images_per_second"] = round(len(images) / benchmark.stats.stats.min, 1)
    assert (r["prediction"] == loaded.predict(images)).all()
