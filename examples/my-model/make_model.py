"""Makes this project's model: a 64-32-10 MLP with random int8 weights, and 50 images to run it on."""
import numpy as np

import nnhil


def dense(rng, n_out, n_in, output):
    return nnhil.Dense(weights=rng.integers(-128, 128, (n_out, n_in)).astype(np.int8),
                       bias=rng.integers(-5000, 5000, n_out).astype(np.int32),
                       mult=rng.integers(1 << 14, 1 << 16, n_out).astype(np.uint16),
                       shift=np.full(n_out, 20, np.uint8), output=output)


def main():
    rng = np.random.default_rng(1)
    model = nnhil.IntModel([dense(rng, 32, 64, nnhil.OUTPUT_U8), dense(rng, 10, 32, nnhil.OUTPUT_I32)], (64,))
    nnhil.save_model("model.npz", model)
    np.save("images.npy", rng.integers(0, 256, (50, 64), dtype=np.uint8))


if __name__ == "__main__":
    main()
