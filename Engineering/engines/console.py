"""What a run prints: its own lines, progress bars and a closing summary.

Third-party notices (Lightning's info lines and tips, Python warnings such as deprecations, torch's weights_only
notice and Lightning's log_every_n_steps/num_workers advice) are forwarded to the ``imlatent.thirdparty`` logger.
Like every record of ``imlatent`` they reach the run's CaptainsLog.log; the console shows them only with
``--debug``. Nothing is dropped globally: the records keep their origin and level, and a test or an embedding
program that calls no executor ``main`` keeps Python's and Lightning's own handling.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

THIRD_PARTY = "imlatent.thirdparty"
#: loggers Lightning writes its notices to (each package adds its own console handler at import)
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning")
CONSOLE_FORMAT = "[imlatent] %(levelname)s %(message)s"


class _Forward(logging.Handler):
    """Hands a record of another library to the ``imlatent.thirdparty`` logger (and so to CaptainsLog)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(THIRD_PARTY).handle(record)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the ``sys.stderr`` of the moment, as ``print(file=sys.stderr)`` does, not to the one at creation
    (a program that runs several executor mains, or redirects stderr between them, would write to a closed one)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def is_own_record(record: logging.LogRecord) -> bool:
    """True for the run's own records; False for those forwarded from other libraries."""
    own = record.name == "imlatent" or record.name.startswith("imlatent.")
    return own and not record.name.startswith(THIRD_PARTY)


def route_third_party() -> None:
    """Forward Python warnings and Lightning's loggers into ``imlatent.thirdparty`` (idempotent)."""
    # off, then on: if a warnings.catch_warnings block restored warnings.showwarning since an earlier call, logging
    # still believes it captures warnings and a bare captureWarnings(True) would not reinstall its hook
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    for name in ("py.warnings", *LIGHTNING_LOGGERS):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, _Forward) or type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)  # Lightning's own console handler; replaced by the forwarder
        logger.addHandler(_Forward())
        logger.propagate = False
        if logger.level in (logging.NOTSET, logging.WARNING) and name != "py.warnings":
            logger.setLevel(logging.INFO)  # Lightning's info lines ("GPU available", tips) are kept for the log


def console_logging(debug: bool) -> None:
    """One console handler for ``imlatent``: own records at INFO and above; third-party ones only with ``debug``."""
    root = logging.getLogger("imlatent")
    handler = next(
        (h for h in root.handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)),
        None,
    )
    if handler is None:
        handler = _StderrHandler()
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))
        root.addHandler(handler)
    for old in [f for f in handler.filters if f is is_own_record]:
        handler.removeFilter(old)
    if not debug:
        handler.addFilter(is_own_record)
    root.setLevel(logging.DEBUG)
    route_third_party()


def log_model_summary(engine: Any) -> None:
    """Lightning's model summary (parameter counts, train/eval modules) into CaptainsLog only."""
    from lightning.pytorch.utilities.model_summary import ModelSummary

    logging.getLogger(THIRD_PARTY).info("Model summary\n%s", ModelSummary(engine, max_depth=1))


def closing_summary(
    run_dir: Path, outputs: Sequence[Path], metrics: Mapping[str, Any], started: float, best: str = ""
) -> list[str]:
    """The lines that end a run: where the outputs are, the key metrics and the elapsed time."""
    lines = [f"Run finished in {_elapsed(time.monotonic() - started)}: {run_dir}"]
    if best:
        lines.append(f"  best checkpoint: {best}")
    lines += [f"  outputs: {p}" for p in outputs]
    shown = [f"{k} {_number(v)}" for k, v in sorted(metrics.items()) if _number(v)]
    if shown:
        lines.append("  metrics: " + ", ".join(shown))
    return lines


def _number(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return ""


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
