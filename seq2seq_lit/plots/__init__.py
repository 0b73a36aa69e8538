"""Figures, with matplotlib's object API: attention heatmaps (``attention.py``) and BLEU by source length
(``length.py``)."""
