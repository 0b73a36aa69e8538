"""Figures, with matplotlib's object API: attention heatmaps (``attention.py``), BLEU by source length
(``length.py``) and the gradient by source position (``gradients.py``)."""
