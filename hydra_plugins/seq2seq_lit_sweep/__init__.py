"""seq2seq-lit's Hydra plugins: the launcher of ``hydra/launcher=ray`` (``ray_trials``)."""
