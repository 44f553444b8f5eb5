"""Resolve the hyper-parameters of a run: CLI options, YAML config, data JSON and ``§`` overrides.

Precedence for a hyper-parameter name: argparse default < explicit CLI option < data JSON < ``--json§`` override.
The result is checked and typed once (:class:`~Engineering.configuration.run_config.RunConfig`), before anything
is read or written. It can be saved as one YAML file and replayed with ``--resolved_config``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from Engineering.configuration.cli import SCRIPTS, build_parser
from Engineering.configuration.overrides import (
    JSON_PREFIX,
    SEP,
    apply_json_overrides,
    apply_yaml_overrides,
    like_existing,
    tokenise,
)
from Engineering.configuration.run_config import Origins, RunConfig, suggest_option
from Engineering.configuration.sections import SECTIONS
from Engineering.errors import ConfigError
from Engineering.fileio import atomic_write_text

log = logging.getLogger("imlatent")

REQUIRED_JSON_KEYS: dict[int, tuple[str, ...]] = {
    0: ("run_prefix", "datadir", "foldCSV", "save_path"),
    1: ("run_prefix", "datadir", "foldCSV", "save_path"),
    2: ("run_prefix", "save_path"),
}
TASK_NAMES = {0: "pythae AE/VAE", 1: "DiffAE", 2: "latent regressor"}
RESOLVED_KEYS = ("script", "argv", "hparams", "config", "datajson")


#: the top-level YAML keys the typed configuration reads
YAML_SECTIONS = tuple(dict.fromkeys(path[0] for model in SECTIONS.values() for path in model.YAML.values()))


@dataclass
class ResolvedConfig:
    """Everything a run is built from: the script, its hyper-parameters, the YAML config and the data JSON.

    ``cfg`` is the typed, checked configuration (None only for a record read back by :func:`load_resolved`);
    ``hparams`` is its flat form as saved.
    """

    script: str
    hparams: argparse.Namespace
    config: dict[str, Any]
    datajson: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    cfg: RunConfig | None = None

    def typed(self) -> RunConfig:
        """The typed configuration (built from ``hparams``/``config`` for a record read back from a file)."""
        return self.cfg or RunConfig.from_saved(vars(self.hparams), self.config, self.script)


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file that must hold a non-empty mapping."""
    data = _read_structured(Path(path), "YAML config", yaml.safe_load, (yaml.YAMLError,))
    if data is None:
        raise ConfigError(
            f"YAML config {path} is empty; expected a mapping with sections such as {', '.join(YAML_SECTIONS)}"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"YAML config {path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def load_datajson(path: str | Path) -> dict[str, Any]:
    """Read a dataNpath JSON file that must hold an object."""
    data = _read_structured(Path(path), "data JSON", json.loads, (json.JSONDecodeError,))
    if not isinstance(data, dict):
        raise ConfigError(f"data JSON {path}: expected an object at the top level, found {type(data).__name__}")
    return data


def _read_structured(path: Path, what: str, parse: Any, errors: tuple[type[Exception], ...]) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} not found (relative paths resolve against {Path.cwd()})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{what} {path} cannot be read: {err}") from None
    try:
        return parse(text)
    except errors as err:
        detail = " ".join(str(err).split())
        raise ConfigError(f"{what} {path} is not valid: {detail}") from None


def _check_task(hparams: argparse.Namespace, datajson: Mapping[str, Any], json_path: str) -> None:
    task = getattr(hparams, "taskID", None)
    if task not in REQUIRED_JSON_KEYS:
        choices = ", ".join(f"{k} ({v})" for k, v in TASK_NAMES.items())
        raise ConfigError(f"--taskID {task!r}: expected one of {choices}")
    missing = [key for key in REQUIRED_JSON_KEYS[task] if key not in datajson]
    if missing:
        raise ConfigError(
            f"data JSON {json_path}: missing required key(s) {', '.join(missing)} for taskID {task} "
            f"(add them to the file or pass --json§KEY VALUE)"
        )


def explicit_options(script: str, argv: Sequence[str]) -> dict[str, Any]:
    """Options given explicitly on the command line (defaults suppressed)."""
    explicit, _ = build_parser(script, suppress_defaults=True).parse_known_args(list(argv))
    return vars(explicit)


def _check_unknown_options(script: str, tokens: Sequence[str], config: Mapping[str, Any]) -> None:
    """A ``--name`` without ``§`` that is no option and no top-level YAML key is a typo, not a new setting."""
    known = [*config, *YAML_SECTIONS]
    for token in tokens:
        if not token.startswith("--"):
            continue
        name = token[2:].split("=", 1)[0]
        name = name.removeprefix("no-")
        if SEP not in name and name not in known:
            raise ConfigError(
                f"unknown option --{name}{suggest_option(name, script, [str(k) for k in config])} "
                f"(set a YAML key with --section{SEP}key VALUE, a data JSON key with --{JSON_PREFIX}KEY VALUE)"
            )


def _flat_typer(path: Sequence[str], text: str, existing: Any) -> Any:
    """Type a ``--json§KEY`` value by the setting it names (its option or field type), else like the old value."""
    if len(path) == 1:
        for model in SECTIONS.values():
            info = model.model_fields.get(path[0])
            if info is not None and info.annotation is not None and path[0] in model.flat_fields():
                try:
                    return TypeAdapter(info.annotation).validate_python(text)
                except ValidationError as err:
                    message = err.errors()[0]["msg"].replace("Input should be", "expected")
                    raise ConfigError(f"--{JSON_PREFIX}{path[0]} {text!r}: {message}") from None
    return like_existing(path, text, existing)


def _typed(
    script: str, hparams: argparse.Namespace, config: dict[str, Any], datajson: dict[str, Any], origins: Origins
) -> RunConfig:
    """Check and type the merged settings (the one place where a run's configuration is built)."""
    for key, value in datajson.items():
        setattr(hparams, key, value)
    _check_task(hparams, datajson, origins.json_file)
    return RunConfig.build(script, vars(hparams), config, origins)


def resolve(script: str, argv: Sequence[str]) -> ResolvedConfig:
    """Resolve the run configuration of ``script`` from its command line ``argv`` (without the program name)."""
    argv = list(argv)
    hparams, unknown = build_parser(script).parse_known_args(argv)
    overrides = tokenise(unknown, raw=True)
    if hparams.resolved_config:
        return _replay(script, argv, overrides, Path(hparams.resolved_config))
    config = load_yaml_config(hparams.configyml_path)
    _check_unknown_options(script, unknown, config)
    apply_yaml_overrides(config, overrides)
    datajson = load_datajson(hparams.datajson_path)
    apply_json_overrides(datajson, overrides, _flat_typer)
    origins = Origins(hparams.configyml_path, hparams.datajson_path, frozenset(datajson), frozenset(overrides))
    cfg = _typed(script, hparams, config, datajson, origins)
    return ResolvedConfig(
        script,
        argparse.Namespace(**cfg.hparams),
        config,
        datajson,
        _typed_overrides(overrides, config, datajson),
        argv,
        cfg,
    )


def _typed_overrides(
    overrides: Mapping[str, Any], config: Mapping[str, Any], datajson: Mapping[str, Any]
) -> dict[str, Any]:
    """The overrides as applied (their typed values), for the saved record; one replaced by a later override of
    a parent key is left out."""
    out: dict[str, Any] = {}
    for key in overrides:
        root, path = (datajson, key[len(JSON_PREFIX) :]) if key.startswith(JSON_PREFIX) else (config, key)
        node: Any = root
        try:
            for part in path.split(SEP):
                node = node[part]
        except (KeyError, TypeError):
            continue
        out[key] = node
    return out


def _replay(script: str, argv: list[str], overrides: dict[str, Any], path: Path) -> ResolvedConfig:
    """Load a saved resolved config and apply this command line's explicit options and overrides on top."""
    return replay(load_resolved(path), script, argv, overrides, f"resolved config {path}")


def replay(
    saved: ResolvedConfig, script: str, argv: Sequence[str], overrides: dict[str, Any], where: str
) -> ResolvedConfig:
    """``saved`` (read from ``where``) with the explicit options and ``§`` overrides of ``argv`` applied on top."""
    if saved.script != script:
        raise ConfigError(f"{where}: saved for script {saved.script!r}, cannot replay it with {script!r}")
    hparams, config, datajson = saved.hparams, saved.config, saved.datajson
    _, unknown = build_parser(script).parse_known_args(list(argv))
    _check_unknown_options(script, unknown, config)
    for name, value in explicit_options(script, argv).items():
        if name not in datajson:  # JSON keys keep their precedence over CLI options
            setattr(hparams, name, value)
    apply_yaml_overrides(config, overrides)
    apply_json_overrides(datajson, overrides, _flat_typer)
    origins = Origins(
        f"{hparams.configyml_path} (replayed from {where})",
        f"{hparams.datajson_path} (replayed from {where})",
        frozenset(datajson),
        frozenset(overrides),
    )
    cfg = _typed(script, hparams, config, datajson, origins)
    applied = _typed_overrides(overrides, config, datajson)
    return ResolvedConfig(
        script, argparse.Namespace(**cfg.hparams), config, datajson, {**saved.overrides, **applied}, list(argv), cfg
    )


_DROP = object()


def plain(value: Any) -> Any:
    """``value`` reduced to YAML-safe plain types (tuples become lists); non-serialisable parts are dropped."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        items = [plain(v) for v in value]
        return [v for v in items if v is not _DROP]
    if isinstance(value, Mapping):
        pairs = {str(k): plain(v) for k, v in value.items() if isinstance(k, str | int | float | bool)}
        return {k: v for k, v in pairs.items() if v is not _DROP}
    return _DROP


def resolved_document(rc: ResolvedConfig) -> dict[str, Any]:
    """``rc`` as plain data (keys script, argv, hparams, config, datajson, overrides): YAML- and checkpoint-safe."""
    return {
        "script": rc.script,
        "argv": plain(rc.argv),
        "hparams": plain(vars(rc.hparams)),
        "config": plain(rc.config),
        "datajson": plain(rc.datajson),
        "overrides": plain(rc.overrides),
    }


def save_resolved(rc: ResolvedConfig, path: Path) -> None:
    """Write :func:`resolved_document` of ``rc`` as one YAML file, atomically."""
    text = yaml.safe_dump(resolved_document(rc), sort_keys=False, allow_unicode=True, default_flow_style=False)
    atomic_write_text(path, text)


def load_resolved(path: Path) -> ResolvedConfig:
    """Read a file written by :func:`save_resolved`."""
    path = Path(path)
    data = _read_structured(path, "resolved config", yaml.safe_load, (yaml.YAMLError,))
    return resolved_from_document(data, f"resolved config {path}")


def resolved_from_document(data: Any, where: str) -> ResolvedConfig:
    """The :class:`ResolvedConfig` of a :func:`resolved_document` read from ``where`` (checked, one-line errors)."""
    if not isinstance(data, dict) or any(key not in data for key in RESOLVED_KEYS):
        found = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{where}: expected keys {', '.join(RESOLVED_KEYS)}; found {found}")
    if data["script"] not in SCRIPTS:
        raise ConfigError(f"{where}: script {data['script']!r} is not one of {', '.join(SCRIPTS)}")
    for key in ("hparams", "config", "datajson"):
        if not isinstance(data[key], dict):
            raise ConfigError(f"{where}: {key!r} must be a mapping, found {type(data[key]).__name__}")
    return ResolvedConfig(
        script=data["script"],
        hparams=argparse.Namespace(**data["hparams"]),
        config=data["config"],
        datajson=data["datajson"],
        overrides=dict(data.get("overrides") or {}),
        argv=[str(a) for a in data["argv"] or []],
    )


@dataclass
class SystemResources:
    """Memory and CPU budget of this process; ``slurm_env`` holds the SLURM* variables (empty outside SLURM)."""

    mem_limit_bytes: int | None
    cpus_avail: int
    slurm_env: dict[str, str] = field(default_factory=dict)


def _machine_resources() -> tuple[int | None, int]:
    """90 % of the available memory (bytes) and of the logical CPUs, at least one CPU."""
    try:
        import psutil

        available: int | None = int(psutil.virtual_memory().available)
        cpus = psutil.cpu_count() or 1
    except ImportError:
        cpus = os.cpu_count() or 1
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            available = None
    mem = math.floor(0.9 * available) if available is not None else None
    return mem, max(1, math.floor(0.9 * cpus))


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    match = re.match(r"\s*(\d+)", env.get(name, ""))
    return int(match.group(1)) if match else None


def system_resources(environ: Mapping[str, str] | None = None) -> SystemResources:
    """Memory limit and CPUs for this run, from SLURM variables when inside a SLURM job, else from the machine.

    Inside SLURM: CPUs from SLURM_CPUS_PER_TASK; memory from SLURM_MEM_PER_CPU × CPUs per task, else
    SLURM_MEM_PER_NODE (both in MB). Any value that is absent falls back to the machine's.
    """
    env = os.environ if environ is None else environ
    machine_mem, machine_cpus = _machine_resources()
    if "SLURM_JOB_ID" not in env:
        return SystemResources(machine_mem, machine_cpus, {})
    log.info("We are in the SLURM space!")
    slurm = {k: v for k, v in env.items() if k.startswith("SLURM")}
    cpus_per_task = _env_int(env, "SLURM_CPUS_PER_TASK")
    mem_per_cpu = _env_int(env, "SLURM_MEM_PER_CPU")
    mem_per_node = _env_int(env, "SLURM_MEM_PER_NODE")
    node_cpus = _env_int(env, "SLURM_JOB_CPUS_PER_NODE")
    mem_mb: int | None = None
    if mem_per_cpu is not None:
        mem_mb = mem_per_cpu * (cpus_per_task or 1)
        slurm["COMPUTED_MEM_PER_TASK"] = str(mem_mb)
        if node_cpus is not None:
            slurm["COMPUTED_MEM_PER_NODE"] = str(mem_per_cpu * node_cpus)
    elif mem_per_node is not None:
        mem_mb = mem_per_node
    mem = mem_mb * 1024 * 1024 if mem_mb is not None else machine_mem
    return SystemResources(mem, cpus_per_task if cpus_per_task else machine_cpus, slurm)
