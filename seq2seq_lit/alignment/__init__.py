"""Attention as alignment: hard alignments from attention weights, force-decoded links, alignment files, AER and symmetrization, the guided-alignment loss."""
