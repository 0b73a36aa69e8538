"""What every part shares: the entry points' error handling, atomic writes and checkpoint IO, loggers, NaN checks, precision
settings, the run summary, and the adapter over Lightning's private names."""
