"""User-facing errors and the executor guard that turns them into one clear line.

Every problem caused by the user's input (a missing file, a malformed override, a data set
that does not follow the contract) is raised as an :class:`ImLatentError` subclass whose
message is one line naming the file, key or value and what was expected. The executors
run their ``main`` through :func:`run_guarded`, which prints that line and exits non-zero,
with no traceback unless ``--debug`` is on the command line or ``IMLATENT_DEBUG=1``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence

log = logging.getLogger("imlatent")


class ImLatentError(Exception):
    """Base class of every error caused by user input or data; its message is one line."""

    exit_code = 2


class ConfigError(ImLatentError):
    """A command-line option, override, YAML or JSON value is wrong or missing."""


class DataError(ImLatentError):
    """The HDF5 data, the fold CSV or a phenotype table does not follow the contract."""


class CheckpointError(ImLatentError):
    """A checkpoint or pretrained weight file is missing, unreadable or does not fit the model."""


class OutputError(ImLatentError):
    """A result file cannot be written (disk full, no permission) or an output set is incomplete."""


class RunFolderBusyError(ImLatentError):
    """Another run holds the run folder's lock."""


def debug_requested(argv: Sequence[str]) -> bool:
    """True when ``--debug`` is among the arguments or ``IMLATENT_DEBUG`` is set to a true value."""
    env = os.environ.get("IMLATENT_DEBUG", "").strip().lower()
    return "--debug" in argv or env in {"1", "true", "yes", "on"}


def error_line(err: BaseException) -> str:
    """The one line that reports ``err``: ``imlatent: error: <message>`` for user errors, else its type and text."""
    message = " ".join(str(err).split("\n")).strip()
    if isinstance(err, ImLatentError):
        return f"imlatent: error: {message}"
    if isinstance(err, KeyboardInterrupt) or (isinstance(err, SystemExit) and err.code == 1):
        return "imlatent: interrupted"
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def run_guarded(main: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; report an :class:`ImLatentError` as one line on stderr and return its exit code.

    With ``--debug`` (or ``IMLATENT_DEBUG=1``) the exception propagates with its traceback.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if debug_requested(args):
        return main(args) or 0
    try:
        return main(args) or 0
    except ImLatentError as err:
        print(error_line(err), file=sys.stderr)
        return err.exit_code
    except Exception as err:
        # Lightning reports impossible Trainer settings this way: they are user input too
        if type(err).__name__ != "MisconfigurationException":
            raise
        print(f"imlatent: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imlatent: interrupted", file=sys.stderr)
        return 130
