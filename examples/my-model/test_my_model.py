"""My model on the SoC under test: `pytest` (the simulation) or `pytest --board arty`."""
import numpy as np

from nnhil.training import modelfile


def test_my_model_is_bit_exact_in_the_modelled_cycles(dut):
    model = modelfile.load_quantized("model.npz")
    images = np.load("images.npy")
    dut.load(model)
    r = dut.infer(images)
    np.testing.assert_array_equal(r.logits, model.logits(images))
    assert (r.argmax == model.predict(images)).all()
    assert (r.cycles == dut.accelerator.model_cycles).all()
    cpu = dut.cpu_infer(model, images[:1])
    assert cpu.exact(model, images[:1]).all()
