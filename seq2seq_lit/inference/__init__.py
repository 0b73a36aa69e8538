"""Using trained models: loading checkpoints, the decoder of a ``ckpt_path`` (one model or an ensemble, int8 quantization), translating lines."""
