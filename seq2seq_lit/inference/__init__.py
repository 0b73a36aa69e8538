"""Using trained models: reading and averaging checkpoints (``checkpoints.py``), the decoder of a ``ckpt_path``
(``decoding.py``: one model, an ensemble (``ensemble.py``), int8 quantization (``quantization.py``)), translating lines
(``translation.py``)."""
