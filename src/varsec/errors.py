"""The error hierarchy: every bad input raises one of these with a one-sentence message.

A message names the file, field or value at fault and says what was expected. The CLI prints
``error: <message>`` and exits with status 2 (no traceback unless ``--debug``).
"""

from __future__ import annotations


class VarsecError(Exception):
    """Base class of every error varsec raises on bad input or missing resources."""


class DataError(VarsecError):
    """A data file or directory is missing, malformed or inconsistent."""


class ChecksumError(DataError):
    """A file's content does not match its recorded sha256."""


class ConfigError(VarsecError):
    """A configuration value (CLI flag, YAML key, Python argument) is out of range or unknown."""


class ModelError(VarsecError):
    """A model, checkpoint or weights file cannot be used as asked."""


class TrainingError(VarsecError):
    """Training diverged or cannot proceed."""


class VarsecWarning(UserWarning):
    """Data was changed on the way in (converted images, dropped interactions); never silent."""
