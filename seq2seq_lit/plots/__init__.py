"""Figures with matplotlib's object API: attention heatmaps and BLEU by source length."""
