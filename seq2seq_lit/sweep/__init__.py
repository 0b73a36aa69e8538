"""Multiruns whose trials fail, stop and resume one by one: the Ray launcher (``hydra/launcher=ray``), the trial
records and the end-of-sweep table (``trials``)."""
