"""The console shows the run's own lines; third-party notices go to the run's log (and the console with --debug)."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator

import pytest

from Engineering.engines.console import LIGHTNING_LOGGERS, closing_summary, console_logging


@pytest.fixture
def streams() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """A console stream and a CaptainsLog-like stream on ``imlatent``; logging state restored afterwards."""
    root = logging.getLogger("imlatent")
    names = ("py.warnings", *LIGHTNING_LOGGERS)
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate) for n in names}
    saved_root = root.handlers[:]
    console, captains = io.StringIO(), io.StringIO()
    root.handlers = [logging.StreamHandler(console)]
    root.handlers[0].setLevel(logging.INFO)
    root.addHandler(logging.StreamHandler(captains))
    yield console, captains
    logging.captureWarnings(False)
    root.handlers = saved_root
    for n, (handlers, propagate) in saved.items():
        logging.getLogger(n).handlers, logging.getLogger(n).propagate = handlers, propagate


def _emit() -> None:
    logging.getLogger("imlatent").info("own line")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info("Tip: try litlogger")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("LeafSpec is deprecated", DeprecationWarning, stacklevel=1)


def test_third_party_notices_go_to_the_log_only(streams: tuple[io.StringIO, io.StringIO]) -> None:
    console, captains = streams
    console_logging(debug=False)
    _emit()
    assert console.getvalue().splitlines() == ["own line"]
    for text in ("own line", "Tip: try litlogger", "LeafSpec is deprecated"):
        assert text in captains.getvalue()


def test_debug_shows_them_on_the_console(streams: tuple[io.StringIO, io.StringIO]) -> None:
    console, _ = streams
    console_logging(debug=True)
    _emit()
    for text in ("own line", "Tip: try litlogger", "LeafSpec is deprecated"):
        assert text in console.getvalue()


def test_closing_summary_names_outputs_metrics_and_time(tmp_path) -> None:
    lines = closing_summary(tmp_path, [tmp_path / "Output"], {"test_ssim": 0.51234, "note": "x"}, 0.0, "best.ckpt")
    assert lines[0].startswith("Run finished in ") and str(tmp_path) in lines[0]
    assert lines[1:] == [
        "  best checkpoint: best.ckpt",
        f"  outputs: {tmp_path / 'Output'}",
        "  metrics: test_ssim 0.5123",
    ]
