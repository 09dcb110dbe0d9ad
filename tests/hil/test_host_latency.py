"""Host-side latency on the target, measured with pytest-benchmark.

Save runs with ``--benchmark-autosave`` and compare later ones with
``--benchmark-compare --benchmark-compare-fail=min:25%``; the cycle-exact figures are
checked by the latency baselines in test_inference.py.
"""
import pytest

pytestmark = pytest.mark.board


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def model_name(request):
    """Both architectures on Fashion-MNIST (the MNIST CNN has the Fashion CNN's shape)."""
    return request.param


def test_single_image_round_trip(benchmark, accelerator, loaded):
    """Write one image, start, poll, read the logits, argmax and cycles: one host round trip."""
    image = loaded.data.test[0][0]
    out = benchmark(accelerator.infer, image)
    assert out.argmax == int(loaded.model.logits(image[None])[0].argmax())


def test_batch_throughput(benchmark, firmware, accelerator, loaded):
    """300 images through main RAM and the firmware's batch runner, results read back."""
    images = loaded.data.test[0][:300]
    r = benchmark.pedantic(firmware.accel_batch,
                           args=(accelerator, images),
                           rounds=3, iterations=1)
    benchmark.extra_info["images_per_second"] = round(len(images) / benchmark.stats.stats.min, 1)
    assert (r.argmax == loaded.model.predict(images)).all()
