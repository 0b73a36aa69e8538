"""Attention as alignment: hard alignments from attention weights (``hard.py``), links from forced decoding
(``forced.py``), gold alignment files (``files.py``), AER and symmetrization (``scoring.py``), the guided-alignment
loss (``guided.py``)."""
