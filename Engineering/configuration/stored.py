"""A run carries its configuration: test or resume commands start from the configuration the run stored.

Every run writes its resolved configuration to ``<run>/resolved_config.yaml`` and into each checkpoint (key
:data:`CHECKPOINT_CONFIG_KEY`, plain data that ``torch.load(weights_only=True)`` reads). A command that reads a
run's checkpoint (``--resume``, ``--load_model_4test RUN``, ``--run_dir RUN``) starts from that stored
configuration; the options and ``§`` overrides given explicitly on its command line override it. Runs written
before configurations were stored (or with an unreadable one) fall back to this command line, as before.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from Engineering.configuration.naming import make_run_name, run_paths
from Engineering.configuration.resolve import (
    ResolvedConfig,
    explicit_options,
    load_datajson,
    load_resolved,
    load_yaml_config,
    replay,
    resolve,
    resolved_from_document,
)
from Engineering.configuration.run_lookup import require_run_folder
from Engineering.configuration.sections import RunControl
from Engineering.errors import CheckpointError, ConfigError

log = logging.getLogger("imlatent")

STORED_CONFIG_NAME = "resolved_config.yaml"
CHECKPOINT_CONFIG_KEY = "imlatent_config"
"""Top-level checkpoint key holding the run's resolved configuration (the content of resolved_config.yaml)."""

#: options that describe this invocation rather than the run: never taken from the stored configuration
INVOCATION_OPTIONS = frozenset(
    {
        "resume",
        "load_best",
        "load_model_4test",
        "run_mode",
        "output_suffix",
        "run_dir",
        "resolved_config",
        "debug",
        "trust_checkpoint",  # only this command line may vouch for a checkpoint
        "dev_run",
        "auto_bs",
        "auto_lr",
        "preweights_path",  # initial weights of the training run: the checkpoint supersedes them
        "load_hf",
    }
)

#: options that describe the machine this command runs on: a run trained with 2 GPUs under DDP is tested on a
#: laptop with the laptop's defaults unless this command line asks for more
MACHINE_OPTIONS = frozenset(
    {
        "accelerator",
        "ndevices",
        "nnodes",
        "training_strategy",
        "num_workers",
        "num_threads",
        "nbatch_prefetch",
        "profiler",
    }
)


def checkpoint_config(path: Path) -> Any | None:
    """The configuration stored in checkpoint ``path`` (read under the pickle policy, weights only), or None if it
    has none or the policy refuses it (the checkpoint's selection then reports it in one line)."""
    from Engineering.pickle_policy import load_pickle  # torch is imported only when a checkpoint is read

    try:
        ckpt = load_pickle(path, mmap=True)
    except CheckpointError as err:  # an old or unreadable checkpoint simply has no usable stored config
        log.debug("no stored configuration read from %s: %s", path, err)
        return None
    return ckpt.get(CHECKPOINT_CONFIG_KEY) if isinstance(ckpt, dict) else None


def _checkpoint_files(folder: Path) -> list[Path]:
    """Checkpoint files of a run folder (or of its Checkpoints/ folder itself), ``last*.ckpt`` first, newest first."""
    ckpt_dir = folder / "Checkpoints" if (folder / "Checkpoints").is_dir() else folder
    files = [p for p in ckpt_dir.glob("*.ckpt") if p.is_file()]
    return sorted(files, key=lambda p: (not p.name.startswith("last"), -p.stat().st_mtime))


def stored_config(folder: Path) -> tuple[ResolvedConfig, str] | None:
    """The configuration a run folder stored and where it was read; None for runs written without one."""
    run = folder.parent if folder.name == "Checkpoints" else folder
    yaml_file = run / STORED_CONFIG_NAME
    if yaml_file.is_file():
        try:
            return load_resolved(yaml_file), str(yaml_file)
        except ConfigError as err:  # an older layout: try the checkpoints, else fall back to the command line
            log.warning("%s; looking for a configuration stored in the checkpoints instead", err)
    for ckpt in _checkpoint_files(folder):
        document = checkpoint_config(ckpt)
        if document is not None:
            try:
                return resolved_from_document(document, f"checkpoint {ckpt}"), f"checkpoint {ckpt}"
            except ConfigError as err:
                log.warning("%s", err)
    return None


def start_from_stored(
    stored: ResolvedConfig, where: str, current: ResolvedConfig, script: str, argv: Sequence[str]
) -> ResolvedConfig:
    """``stored`` with this command's explicit options and overrides on top (``current`` is this command resolved).

    Invocation and machine options (:data:`INVOCATION_OPTIONS`, :data:`MACHINE_OPTIONS`) come from this command,
    given or defaulted. An explicit ``--configyml_path`` or
    ``--datajson_path`` reads that file again instead of using the stored copy.
    """
    base = copy.deepcopy(stored)
    now = current.hparams
    for name in INVOCATION_OPTIONS | MACHINE_OPTIONS:
        if hasattr(now, name):
            setattr(base.hparams, name, getattr(now, name))
    explicit = explicit_options(script, argv)
    if "configyml_path" in explicit:
        base.config = load_yaml_config(now.configyml_path)
    if "datajson_path" in explicit:
        for key in base.datajson:  # the stored JSON's keys no longer apply: back to this command's values
            if hasattr(now, key):
                setattr(base.hparams, key, getattr(now, key))
            else:
                delattr(base.hparams, key)
        base.datajson = load_datajson(now.datajson_path)
    return replay(base, script, argv, current.overrides, where)


def _check_run_selection(run: RunControl) -> None:
    if run.run_dir and not run.resume:
        raise ConfigError(f"--run_dir {run.run_dir} names a run to test or continue from its checkpoint: add --resume")
    if run.run_dir and run.load_model_4test:
        raise ConfigError(
            "--run_dir and --load_model_4test both name a run: --run_dir tests or continues that run in its own"
            " folder, --load_model_4test tests its checkpoint into this command's run folder; use one"
        )


def source_run(rc: ResolvedConfig) -> Path:
    """The run folder whose checkpoint (and stored configuration) this command reads; it must exist."""
    assert rc.cfg is not None  # resolve always types the configuration
    run, prefix = rc.cfg.run, rc.cfg.data.run_prefix
    for option, given in (("load_model_4test", run.load_model_4test), ("run_dir", run.run_dir)):
        if given:
            return require_run_folder(Path(given), prefix, f"given with --{option}")
    _, run_name = make_run_name(rc.cfg)
    what = "named by --trainID, --foldID, --ampmode, the engine and the data JSON's run_prefix and save_path"
    return require_run_folder(run_paths(rc.cfg, run_name).run_dir, prefix, what)


def resolve_run(script: str, argv: Sequence[str]) -> ResolvedConfig:
    """:func:`resolve`, then, for a command that reads a run's checkpoint, start from that run's stored config."""
    argv = list(argv)
    current = resolve(script, argv)
    assert current.cfg is not None  # resolve always types the configuration
    run = current.cfg.run
    _check_run_selection(run)
    if not (run.resume or run.load_model_4test) or run.resolved_config:
        return current  # nothing to read back (a replayed --resolved_config already is a stored configuration)
    folder = source_run(current)
    found = stored_config(folder)
    if found is None:
        log.warning("%s stores no readable configuration (an older run): using this command line's options", folder)
        return current
    stored, where = found
    rc = start_from_stored(stored, where, current, script, argv)
    if not run.load_model_4test:  # the run's own folder, whatever its stored save_path says (it may have moved)
        assert rc.cfg is not None  # replay types the configuration
        rc.cfg = rc.cfg.updated(run_dir=str(folder))
        rc.hparams.run_dir = str(folder)
    log.info("Starting from the configuration stored in %s; options on this command line override it", where)
    return rc
