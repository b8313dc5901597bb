"""User-facing errors.

Every problem a user can fix (bad input, missing weights, wrong model directory) is raised as an
:class:`EgoframeError` subclass with a one-line message that says what to provide. The CLI turns these
into ``error: <message>`` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations


class EgoframeError(Exception):
    """Base class of errors whose message is meant for the user."""

    exit_code = 2


class InputError(EgoframeError, ValueError):
    """Bad user input: a missing/corrupt file, an empty prompt, a malformed annotation row."""


class ImageTooLargeError(InputError):
    """An image over Pillow's decompression-bomb limit: refused alone, skipped (and counted) in a folder run."""


class ModelLoadError(EgoframeError):
    """A model directory that is missing, of the wrong kind, or whose shapes do not fit together."""


class MissingWeightsError(EgoframeError):
    """A model-based step needs real weights that are not available offline."""


class ConfigError(EgoframeError, ValueError):
    """An invalid configuration value (unknown key, wrong type, inconsistent settings)."""


class TrainingDivergedError(EgoframeError):
    """A training run's loss became NaN or infinite; the message says which setting to change."""
