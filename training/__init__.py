"""NumPy training, post-training quantization and the integer reference model."""
