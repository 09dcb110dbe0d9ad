"""My model on the SoC under test: `pytest` (the simulation) or `pytest --nnhil-target arty` (a board)."""
import numpy as np

import nnhil


def test_my_model_is_bit_exact_in_the_modelled_cycles(nnhil_dut):
    model = nnhil.load_model("model.npz")
    images = np.load("images.npy")
    nnhil_dut.load(model)
    r = nnhil_dut.infer(images)
    np.testing.assert_array_equal(r.logits, model.logits(images))
    assert (r.argmax == model.predict(images)).all()
    assert (r.cycles == nnhil_dut.accelerator.model_cycles).all()
    cpu = nnhil_dut.cpu_infer(model, images[:1])
    assert cpu.exact(model, images[:1]).all()
