"""One typed, checked run configuration built from the flat hyper-parameters and the YAML config.

:class:`RunConfig` is what every part of a run receives. It is built once by
:func:`Engineering.configuration.resolve.resolve` from the CLI defaults, the YAML, the data JSON and the ``§``
overrides, and rebuilt from the ``hparams``/``config`` pair that every checkpoint carries. Building it checks types,
ranges and choices of every setting and the network settings that cannot work together, and reports the first bad
value as one line naming the option (or the YAML/JSON key and its file), the value and what is allowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from Engineering.configuration.cli import OPTIONS, SCRIPTS
from Engineering.configuration.sections import (
    SECTIONS,
    DataSettings,
    DiffAESettings,
    LatentSettings,
    ModelSettings,
    OutputSettings,
    PythaeSettings,
    RunControl,
    Section,
    TrainingSettings,
)
from Engineering.errors import ConfigError

TASK_SCRIPTS = {task: script for script, task in SCRIPTS.items()}
_OPTION_NAMES = {opt.dest for opt in OPTIONS}
_MISSING = object()
S = TypeVar("S", bound=Section)


@dataclass(frozen=True)
class Origins:
    """Where the values came from, so that an error names the option, or the YAML/JSON key and its file."""

    yaml_file: str = ""
    json_file: str = ""
    json_keys: frozenset[str] = frozenset()
    overrides: frozenset[str] = frozenset()

    def of_flat(self, key: str) -> str:
        """How the user set the flat hyper-parameter ``key``, with a trailing separator before the value."""
        if f"json§{key}" in self.overrides:
            return f"--json§{key} "
        if key in self.json_keys and self.json_file:
            return f"data JSON {self.json_file}: key {key} = "
        if key in _OPTION_NAMES:
            return f"--{key} "
        return f"hyper-parameter {key} = "

    def of_yaml(self, path: Sequence[str]) -> str:
        """How the user set the YAML key at ``path``."""
        for depth in range(len(path), 0, -1):
            key = "§".join(path[:depth])
            if key in self.overrides:
                return f"--{'§'.join(path)} "
        where = f"YAML config {self.yaml_file}: key" if self.yaml_file else "YAML key"
        return f"{where} {'.'.join(path)} = "


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _all_defaults(script: str) -> dict[str, Any]:
    """Every option's default for ``script`` (options the script lacks keep their common default)."""
    return {opt.dest: opt.default_for(script) for opt in OPTIONS}


def _yaml_value(yaml: Mapping[str, Any], path: Sequence[str], origins: Origins) -> Any:
    node: Any = yaml
    for depth, part in enumerate(path):
        if not isinstance(node, Mapping):
            parent = path[:depth]
            raise ConfigError(f"{origins.of_yaml(parent)}{_show(node)}: expected a mapping")
        if part not in node:
            return _MISSING
        node = node[part]
    return node


def _section_input(
    cls: type[Section], flat: Mapping[str, Any], yaml: Mapping[str, Any], origins: Origins
) -> dict[str, Any]:
    values = {name: flat[name] for name in cls.flat_fields() if name in flat}
    for name, prefix in cls.PREFIXED.items():
        values[name] = {key[len(prefix) :]: value for key, value in flat.items() if key.startswith(prefix)}
    for name, path in cls.YAML.items():
        value = _yaml_value(yaml, path, origins)
        if value is not _MISSING:
            values[name] = value
    return values


def _valid_keys(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """Field names of the (nested) model at ``loc``."""
    for part in loc:
        info = model.model_fields.get(str(part))
        nested = info.annotation if info is not None else None
        if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
            return []
        model = nested
    return list(model.model_fields)


def _error_line(cls: type[Section], err: Mapping[str, Any], origins: Origins) -> str:
    loc = [str(part) for part in err["loc"]]
    name = loc[0]
    if name in cls.YAML:
        where = origins.of_yaml([*cls.YAML[name], *loc[1:]])
    elif name in cls.PREFIXED:
        where = origins.of_flat(cls.PREFIXED[name] + ".".join(loc[1:]))
    else:
        where = origins.of_flat(".".join(loc))
    if err["type"] == "extra_forbidden":
        valid = _valid_keys(cls, loc[:-1])
        return f"{where.rstrip(' =')}: unknown key; valid: {', '.join(valid)}"
    message = str(err["msg"]).removeprefix("Value error, ")
    message = message.replace("Input should be", "expected").replace("Field required", "missing")
    return f"{where}{_show(err['input'])}: {message}"


def _validated(cls: type[S], flat: Mapping[str, Any], yaml: Mapping[str, Any], origins: Origins) -> S:
    try:
        return cls(**_section_input(cls, flat, yaml, origins))
    except ValidationError as err:
        errors = err.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(_error_line(cls, errors[0], origins) + more) from None


@dataclass(frozen=True)
class RunConfig:
    """The typed settings of one run, and the ``hparams``/``yaml`` pair they were built from.

    ``hparams`` is the flat form stored in checkpoints and ``resolved_config.yaml`` (values as checked, e.g. a data
    JSON's ``"no"`` becomes False); ``extras`` are its keys that no section describes (free data-JSON keys).
    Use :meth:`updated` for a changed copy: the sections are immutable.
    """

    script: str
    run: RunControl
    data: DataSettings
    training: TrainingSettings
    model: ModelSettings
    diffae: DiffAESettings
    pythae: PythaeSettings
    latent: LatentSettings
    outputs: OutputSettings
    hparams: dict[str, Any]
    yaml: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)
    origins: Origins = field(default=Origins(), compare=False)

    @classmethod
    def build(
        cls, script: str, hparams: Mapping[str, Any], yaml: Mapping[str, Any], origins: Origins | None = None
    ) -> RunConfig:
        """Check and type ``hparams`` (options missing from it take their defaults) and ``yaml``."""
        if script not in SCRIPTS:
            raise ConfigError(f"unknown script {script!r}: expected one of {', '.join(SCRIPTS)}")
        origins = origins or Origins()
        given = dict(hparams)
        full = {**_all_defaults(script), **given}
        config = cls(
            script=script,
            run=_validated(RunControl, full, yaml, origins),
            data=_validated(DataSettings, full, yaml, origins),
            training=_validated(TrainingSettings, full, yaml, origins),
            model=_validated(ModelSettings, full, yaml, origins),
            diffae=_validated(DiffAESettings, full, yaml, origins),
            pythae=_validated(PythaeSettings, full, yaml, origins),
            latent=_validated(LatentSettings, full, yaml, origins),
            outputs=_validated(OutputSettings, full, yaml, origins),
            hparams=given,
            yaml=dict(yaml),
            origins=origins,
        )
        claimed = {name for model in SECTIONS.values() for name in model.flat_fields()}
        prefixes = tuple(p for model in SECTIONS.values() for p in model.PREFIXED.values())
        for name in SECTIONS:  # the flat form keeps the checked values (e.g. a JSON "no" becomes False)
            dumped = getattr(config, name).model_dump()
            given.update({k: v for k, v in dumped.items() if k in given and k in claimed})
        config.extras.update({k: v for k, v in given.items() if k not in claimed and not k.startswith(prefixes)})
        check_model(config)
        return config

    @classmethod
    def from_saved(cls, hparams: Mapping[str, Any], config: Mapping[str, Any], script: str | None = None) -> RunConfig:
        """Rebuild from the ``hparams``/``config`` a checkpoint or a resolved config stores (also older ones).

        ``script`` defaults to the one of the stored taskID.
        """
        if script is None:
            task = hparams.get("taskID", 0)
            if task not in TASK_SCRIPTS:
                raise ConfigError(
                    f"hyper-parameter taskID = {task!r}: expected one of {', '.join(map(str, TASK_SCRIPTS))}"
                )
            script = TASK_SCRIPTS[task]
        return cls.build(script, hparams, config)

    def updated(self, **changes: Any) -> RunConfig:
        """A copy with the flat hyper-parameters ``changes`` applied (checked again)."""
        return RunConfig.build(self.script, {**self.hparams, **changes}, self.yaml, self.origins)

    @property
    def accumulate(self) -> int:
        """Batches accumulated per optimiser step: effective // real batch size, at least 1."""
        return max(1, self.run.effective_batch_size // self.run.batch_size)


def suggest_option(name: str, script: str, yaml_keys: Sequence[str]) -> str:
    """`` did you mean --x?`` for an unknown option ``name`` (closest option or top-level YAML key), or ``""``."""
    candidates = [opt.dest for opt in OPTIONS if script in opt.scripts] + [str(k) for k in yaml_keys]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"; did you mean --{close[0]}?" if close else ""


# ------------------------------------------------------------------------------------------ combinations
def check_model(cfg: RunConfig) -> None:
    """Settings that the chosen network cannot use (checked whenever a configuration is built)."""
    task, model = cfg.run.taskID, cfg.model
    latent_where = cfg.origins.of_yaml(("model", "latent_dim"))
    if task == 1:
        if model.latent_dim is None or model.latent_dim < 1:
            raise ConfigError(f"{latent_where}{model.latent_dim}: DiffAE needs a positive integer latent size")
        _check_shape_rank(cfg)
    elif task == 0:
        if model.modelID == 0 and model.latent_dim is not None and model.latent_dim != -1 and model.latent_dim < 1:
            raise ConfigError(
                f"{latent_where}{model.latent_dim}: expected a positive latent size, or -1/null for the pythae "
                "model's own default"
            )


def _check_shape_rank(cfg: RunConfig) -> None:
    shape, rank = cfg.data.shape, 3 if cfg.model.is_3d else 2
    if len(shape) != rank:
        raise ConfigError(
            f"{cfg.origins.of_flat('input_shape')}{cfg.data.input_shape!r}: has {len(shape)} sizes but "
            f"--is3D {cfg.model.is3D} needs {rank}"
        )
