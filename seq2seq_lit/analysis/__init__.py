"""Measurements of a model's inner workings (not of its translations): how much gradient reaches each source position
(``gradients.py``)."""
