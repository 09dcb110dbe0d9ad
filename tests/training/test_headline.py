"""The headline hardware model meets its accuracy targets on the full test set.

Training and float evaluation run on workflow.BLAS_THREADS BLAS threads, since the float
result depends on the thread count (summation order). It also depends on the BLAS kernel,
which OpenBLAS picks by CPU kind: the targets hold for every seed measured on every kernel
measured, with room for another CPU kind (docs/accuracy.md).
"""
from nnhil.training import modelfile, workflow
from nnhil.training.train import TrainConfig

# Seeds 0-4, float / integer %, numpy 2.4.6, OpenBLAS 0.3.31 on one thread, AMD EPYC, 2026-12-07
# (tests/benchmarks/seed_table.py, docs/accuracy.md):
#   SkylakeX kernel  89.46/89.46  89.36/89.33  89.16/89.14  89.60/89.62  89.29/89.18
#   Haswell kernel   89.60/89.64  89.36/89.37  89.53/89.57  89.47/89.41  89.40/89.41
# The rule (docs/accuracy.md): the worst, less the spread of every seed and kernel, less the most
# two kernels moved one seed of any model (float 37 images: the MLP's seed 2; integer 43).
# float: worst 89.16, spread 44, kernels 37: at most 88.35%, target 88.3%;
# integer: worst 89.14, spread 50, kernels 43: at most 88.21%, target 88.2%.
FLOAT_TARGET = 0.883
INT_TARGET = 0.882
MAX_QUANT_LOSS = 0.005     # integer below float: at most 11 test images at the seeds above (seed 4)


def test_headline_fits_the_arty_budget(headline):
    model, _ = headline
    assert model.n_in == 784 and model.n_out == 10
    assert sum(layer.weights.size for layer in model.layers) <= 102_000


def test_headline_accuracy_float_and_integer(headline, fashion):
    qmodel, out_dir = headline
    fmodel, st, meta = modelfile.load_float(out_dir / "float.npz")
    assert meta["train_config"] == TrainConfig().to_dict()
    images, labels = fashion.test
    assert len(labels) == 10_000
    with workflow.pinned_blas():
        float_acc = float((fmodel.predict(st(images)) == labels).mean())
    int_acc = float((qmodel.predict(images) == labels).mean())
    margin = round((float_acc - FLOAT_TARGET) * len(labels))
    print(f"headline float {float_acc:.4f} ({margin:+d} images against the target) integer {int_acc:.4f}")
    assert float_acc >= FLOAT_TARGET
    assert int_acc >= INT_TARGET
    assert int_acc >= float_acc - MAX_QUANT_LOSS


def test_headline_plots_written(headline):
    _, out_dir = headline
    for name in ("curves.png", "confusion.png", "samples.png"):
        data = (out_dir / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_integer_model_agrees_with_float_argmax(headline, fashion):
    qmodel, out_dir = headline
    fmodel, st, _ = modelfile.load_float(out_dir / "float.npz")
    images = fashion.test[0][:2000]
    with workflow.pinned_blas():
        float_pred = fmodel.predict(st(images))
    assert (qmodel.predict(images) == float_pred).mean() >= 0.98
