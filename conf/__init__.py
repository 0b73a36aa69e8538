"""The Hydra configs, shipped in the wheel as the package ``seq2seq_lit.conf`` (found through ``pkg://seq2seq_lit.conf``)."""
