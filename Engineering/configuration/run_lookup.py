"""When the run folder a test or resume command names does not exist: which existing run it probably meant.

A run folder's name is built from several options (see :mod:`Engineering.configuration.naming`), so a test command
that leaves out one training flag (say ``--ampmode 32``) names a folder that does not exist. The error then lists
the closest existing run folders under ``save_path`` and the options that select each of them.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, fields
from pathlib import Path

from Engineering.errors import ConfigError

#: at most this many folders are suggested
MAX_SUGGESTIONS = 3

# <trainID>fold<foldID>_prec<ampmode><tag>[_interp<f>]; the greedy trainID takes the last "fold<N>_prec" match
_NAME_RE = re.compile(
    r"^(?P<trainID>.+)fold(?P<foldID>\d+)_prec(?P<ampmode>[^_]+)"
    r"(?P<tag>_DiffAE|_LtCls|_model\d+|_pythaemodel-.+?)(?:_interp(?P<interp>[^_]+))?$"
)


@dataclass(frozen=True)
class RunNameParts:
    """The option values a run folder name encodes (``interp`` is "" without an ``_interp`` suffix)."""

    trainID: str
    foldID: str
    ampmode: str
    tag: str
    interp: str


def parse_run_name(name: str, run_prefix: str) -> RunNameParts | None:
    """The parts of ``<run_prefix>_<trainID>fold<N>_prec<amp><tag>[_interp<f>]``; None if ``name`` is not one."""
    if run_prefix:
        if not name.startswith(f"{run_prefix}_"):
            return None
        name = name[len(run_prefix) + 1 :]
    match = _NAME_RE.match(name)
    if match is None:
        return None
    groups = match.groupdict()
    return RunNameParts(**{key: groups[key] or "" for key in groups})


def _tag_options(tag: str) -> list[str] | None:
    """Options that select an engine tag; None for a tag of another executor (that folder cannot be meant)."""
    if tag.startswith("_model"):
        return ["--modelID", tag.removeprefix("_model")]
    if tag.startswith("_pythaemodel-"):
        return ["--modelID", "0", "--pythae_model", tag.removeprefix("_pythaemodel-")]
    return None


def options_selecting(wanted: RunNameParts, found: RunNameParts) -> list[str] | None:
    """The command-line options that turn the name ``wanted`` into ``found`` (None if no option can)."""
    options: list[str] = []
    for part in fields(RunNameParts):
        mine, theirs = getattr(wanted, part.name), getattr(found, part.name)
        if mine == theirs:
            continue
        if part.name == "tag":
            tag_options = _tag_options(theirs)
            if tag_options is None or _tag_options(mine) is None:
                return None
            options += tag_options
        elif part.name == "interp":
            options += ["--interp_fact", theirs or "1"]
        else:
            options += [f"--{part.name}", theirs]
    return options


def _run_folders(save_path: Path) -> list[Path]:
    """Folders under ``save_path`` that hold a Checkpoints/ folder (the only ones a test or resume can use)."""
    try:
        return sorted(p for p in save_path.iterdir() if (p / "Checkpoints").is_dir())
    except OSError:
        return []


def closest_runs(wanted: Path, run_prefix: str) -> list[tuple[Path, list[str] | None]]:
    """Up to :data:`MAX_SUGGESTIONS` run folders next to ``wanted``, closest first, with the options selecting each.

    Closest means the fewest options to change, then the most similar name. The options are None for a folder
    whose name does not follow this dataset's naming scheme (it can only be chosen with ``--run_dir``).
    """
    mine = parse_run_name(wanted.name, run_prefix)
    scored: list[tuple[int, float, Path, list[str] | None]] = []
    for folder in _run_folders(wanted.parent):
        theirs = parse_run_name(folder.name, run_prefix)
        options = options_selecting(mine, theirs) if mine and theirs else None
        similarity = difflib.SequenceMatcher(None, wanted.name, folder.name).ratio()
        if options is None and similarity < 0.6:
            continue  # neither selectable by options nor a likely typo: not worth listing
        changes = len(options) // 2 if options is not None else 99
        scored.append((changes, -similarity, folder, options))
    scored.sort(key=lambda item: (item[0], item[1], item[2].name))
    return [(folder, options) for _, _, folder, options in scored[:MAX_SUGGESTIONS]]


def missing_run_message(wanted: Path, run_prefix: str, what: str) -> str:
    """One line: ``wanted`` (``what`` names where it came from) does not exist, and the closest run folders."""
    head = f"run folder {wanted} does not exist ({what})"
    suggestions = closest_runs(wanted, run_prefix)
    if not suggestions:
        return f"{head}, and {wanted.parent} holds no run folder with Checkpoints/; check --json§save_path or pass --run_dir"
    parts = []
    for folder, options in suggestions:
        add = f"add {' '.join(options)}, or " if options else ""
        parts.append(f"found {folder.name}: {add}pass --run_dir {folder}")
    return f"{head}; " + "; ".join(parts)


def require_run_folder(wanted: Path, run_prefix: str, what: str) -> Path:
    """``wanted`` if it is a folder, else a :class:`ConfigError` naming the closest existing run folders."""
    if not wanted.is_dir():
        raise ConfigError(missing_run_message(wanted, run_prefix, what))
    return wanted
