"""User-facing errors.

Every error a user can cause with bad input or configuration derives from :class:`Seq2SeqError`. Its message names the
file (and line, where there is one) and says how to fix it; the entry points print it without a traceback and exit
with status 2.
"""


class Seq2SeqError(Exception):
    """Base class of the errors caused by user input or configuration."""


class DataError(Seq2SeqError):
    """A corpus file is missing, empty, misaligned, not UTF-8, or failed its checksum."""


class ConfigError(Seq2SeqError):
    """A configuration value is unknown or contradicts another one."""
