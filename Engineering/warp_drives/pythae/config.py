"""Config resolution of the pythae station, as a pure function from options to a typed result.

Order (same as the original): JSON file (``--pythae_config`` relative to :data:`CONFIG_ROOT`, blank =
``originals/celeba/<model>_config.json``, class defaults when that file does not exist) → ``latent_dim`` (if > 0)
→ ``model.pythae.models.<model>`` → top-level ``model.pythae`` keys that are config fields. Differences from the
original, all deliberate: override keys the config does not have are a :class:`ConfigError` (they were silently
ignored), values are validated by the config class (attribute assignment skipped validation), ``input_dim`` is
``(C, *spatial)`` (the original passed the spatial shape only), JSON files are loaded leniently for
``reconstruction_loss`` (the repo's own JSONs failed to load) and the loss is checked against what the model
supports (``l1`` falls back to ``mse`` on built-in models).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError

from Engineering.errors import ConfigError
from Engineering.warp_drives.pythae.model_spec import ModelSpec
from Engineering.warp_drives.pythae.nn import COMPLEX_NN, resolve_nn

log = logging.getLogger("imlatent.pythae")

CONFIG_ROOT = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG_DIR = "originals/celeba"
DEFAULT_N_FEATURES = 64

#: top-level ``model.pythae`` keys the station itself understands (besides config fields).
STATION_KEYS = (
    "n_features",
    "nn",
    "reconstruction_loss",
    "custom_loss_class",
    "custom_loss_params",
    "wrappers",
    "models",
)
#: accepted alternative spellings of config fields (the original's YAML says lambda_phenotype_loss)
FIELD_ALIASES = {"lambda_phenotype_loss": "lambda_pheno_loss"}
#: side-information counts (hparams n_*) copied into configs that learn phenotypes / confounders
PHENOTYPE_COUNTS = ("n_phenotypes",)
CONFOUNDER_COUNTS = ("n_confounders", "n_confounders_bincat", "n_confounders_mulcat", "n_confounders_cont")
CUSTOM_LOSSES = ("custom", "custom_masked")
#: the shipped YAML's loss; built-in pythae models, which lack it, fall back to their default loss.
L1_FALLBACK_FROM = "l1"
#: config fields the station owns; overriding them is an error.
PROTECTED_FIELDS = (
    "input_dim",
    "name",
    "uses_default_encoder",
    "uses_default_decoder",
    "uses_default_discriminator",
    "uses_default_metric",
    "discriminator_input_dim",
)


@dataclass(frozen=True)
class ResolvedConfig:
    """Everything the station needs to build the model, fully resolved.

    Attributes:
        spec: the registry entry.
        config: the pythae model config instance (validated), ``input_dim = (C, *spatial)``.
        spatial_shape: spatial sizes only; ``dims = len(spatial_shape)``.
        in_channels / n_features / latent_dim: C, F and L.
        nn: ``convnet`` | ``resnet`` | ``cvconvnet``.
        reconstruction_loss: the value in effect, or ``None`` for models that compute their own.
        config_file: the JSON that was read, or ``None`` (class defaults).
        overrides: the YAML values that were applied, for the record.
        custom_loss_class / custom_loss_params: the injected loss for ``custom``/``custom_masked``, else ``None``.
    """

    spec: ModelSpec
    config: Any
    spatial_shape: tuple[int, ...]
    in_channels: int
    n_features: int
    latent_dim: int
    nn: str
    reconstruction_loss: str | None
    config_file: Path | None
    overrides: dict[str, Any] = field(default_factory=dict)
    custom_loss_class: str | None = None
    custom_loss_params: Any = None

    @property
    def dims(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.spatial_shape)


def config_fields(config_cls: type) -> list[str]:
    """Names of the fields of a pythae config dataclass."""
    return list(cast(Any, config_cls).__dataclass_fields__)  # a dataclass type (``type`` does not say so)


def find_config_file(spec: ModelSpec, pythae_config: str) -> Path | None:
    """``configs/<pythae_config>`` (must exist) or the CelebA default (may be absent → ``None``)."""
    if pythae_config:
        path = CONFIG_ROOT / pythae_config
        if not path.is_file():
            raise ConfigError(
                f"--pythae_config {pythae_config!r}: no such file {path} (paths are relative to {CONFIG_ROOT})"
            )
        return path
    if spec.is_custom:
        return None
    path = CONFIG_ROOT / DEFAULT_CONFIG_DIR / f"{spec.key}_config.json"
    if not path.is_file():
        log.info("no default config %s for %s; using the pythae class defaults", path.name, spec.key)
        return None
    return path


def read_config_json(path: Path, spec: ModelSpec) -> dict[str, Any]:
    """Read a pythae config JSON; drop ``name`` and (with a warning) keys the config class does not have."""
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"pythae config {path}: cannot be read as JSON ({err})") from err
    if not isinstance(values, dict):
        raise ConfigError(f"pythae config {path}: expected a JSON object, got {type(values).__name__}")
    values.pop("name", None)
    fields = config_fields(spec.config_cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        log.warning(
            "pythae config %s: ignoring keys %s, which %s does not have", path, unknown, spec.config_cls.__name__
        )
    return {k: v for k, v in values.items() if k in fields}


def _apply_overrides(
    values: dict[str, Any], overrides: Mapping[str, Any], fields: list[str], where: str
) -> dict[str, Any]:
    """Copy ``overrides`` into ``values``; keys that are not config fields, or are protected, raise."""
    applied = {}
    for key, value in overrides.items():
        if key == "reconstruction_loss":
            continue
        key = FIELD_ALIASES.get(key, key) if FIELD_ALIASES.get(key) in fields else key
        if key not in fields or key in PROTECTED_FIELDS:
            valid = [f for f in fields if f not in PROTECTED_FIELDS]
            raise ConfigError(f"{where}: {key!r} is not a setting of this model; valid keys: {', '.join(valid)}")
        values[key] = value
        applied[key] = value
    return applied


def check_reconstruction_loss(spec: ModelSpec, value: Any) -> str | None:
    """Return the loss in effect for ``spec`` or raise :class:`ConfigError` naming the valid values.

    Built-in pythae losses only branch on ``mse``/``bce``; the original crashed on ``l1`` at the first step.
    ``l1`` is the shipped YAML's value, so refusing it would make the default command (``factor_vae`` + the YAML)
    fail: such models train with their own default (``mse``) and say so in one
    line. Any other unsupported value is refused. Models that compute their own reconstruction term ignore
    the setting, as in the original.
    """
    if spec.recon_losses is None:
        if value not in (None, ""):
            log.info("%s computes its own reconstruction loss; reconstruction_loss=%r is ignored", spec.key, value)
        return None
    if value in (None, ""):
        return spec.recon_losses[0]
    if value == L1_FALLBACK_FROM and value not in spec.recon_losses and not spec.is_custom:
        log.warning(
            "reconstruction_loss 'l1' (the YAML's) is not supported by %s; using %r (it accepts %s). "
            "For an L1 FactorVAE use --pythae_model custom_factor_vae",
            spec.display_name,
            spec.recon_losses[0],
            ", ".join(spec.recon_losses),
        )
        return spec.recon_losses[0]
    if value not in spec.recon_losses:
        raise ConfigError(
            f"reconstruction_loss={value!r} is not supported by {spec.display_name}; "
            f"valid values: {', '.join(spec.recon_losses)}"
        )
    return str(value)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a positive integer")
    return value


def resolve_config(
    spec: ModelSpec,
    input_shape: tuple[int, ...],
    in_channels: int,
    latent_dim: int | None,
    yaml_pythae: Mapping[str, Any],
    pythae_config: str = "",
    counts: Mapping[str, int] | None = None,
) -> ResolvedConfig:
    """Resolve the model config of one station.

    Args:
        spec: registry entry (:func:`~Engineering.warp_drives.pythae.registry.resolve_model`).
        input_shape: spatial shape only, e.g. ``(56, 128, 128)``.
        in_channels: C.
        latent_dim: YAML ``model.latent_dim``; ``None`` or ≤ 0 keeps the config file's value.
        yaml_pythae: the YAML ``model.pythae`` mapping.
        pythae_config: ``--pythae_config`` (relative to :data:`CONFIG_ROOT`), blank for the default.
        counts: ``n_phenotypes``/``n_confounders*`` of the data, copied into configs that use them.
    """
    yaml_pythae = dict(yaml_pythae or {})
    fields = config_fields(spec.config_cls)
    unknown = sorted(
        k for k in yaml_pythae if k not in STATION_KEYS and k not in fields and FIELD_ALIASES.get(k) not in fields
    )
    if unknown:
        raise ConfigError(
            f"model.pythae: unknown key(s) {', '.join(map(repr, unknown))} for {spec.display_name}; valid keys: "
            f"{', '.join(STATION_KEYS)} and the model's settings ({', '.join(f for f in fields if f not in PROTECTED_FIELDS)})"
        )
    config_file = find_config_file(spec, pythae_config)
    values = read_config_json(config_file, spec) if config_file else {}
    recon = values.pop("reconstruction_loss", None)
    if latent_dim is not None and latent_dim > 0:
        values["latent_dim"] = _positive_int("model.latent_dim", latent_dim)

    models = yaml_pythae.get("models") or {}
    if not isinstance(models, Mapping):
        raise ConfigError(f"model.pythae.models must be a mapping of model name → settings, got {models!r}")
    per_model = models.get(spec.key) or {}
    applied = _apply_overrides(values, per_model, fields, f"model.pythae.models.{spec.key}")
    recon = per_model.get("reconstruction_loss", recon)
    top_level = {k: v for k, v in yaml_pythae.items() if k not in STATION_KEYS}
    applied.update(_apply_overrides(values, top_level, fields, "model.pythae"))
    recon = yaml_pythae.get("reconstruction_loss", recon)
    recon = check_reconstruction_loss(spec, recon)
    if recon is not None and "reconstruction_loss" in fields:
        values["reconstruction_loss"] = recon

    _apply_counts(values, spec.config_cls, counts or {})
    custom_class = yaml_pythae.get("custom_loss_class") if recon in CUSTOM_LOSSES else None
    if recon in CUSTOM_LOSSES and not custom_class:
        raise ConfigError(
            f"reconstruction_loss={recon!r} needs model.pythae.custom_loss_class "
            "(e.g. Engineering.Science.losses.masked_loss.MaskedReconLoss)"
        )
    nn_family = resolve_nn(yaml_pythae.get("nn"))
    if spec.is_complex != (nn_family in COMPLEX_NN):
        need = "nn: cvconvnet" if spec.is_complex else "nn: convnet or resnet (cvconvnet is for the complex models)"
        raise ConfigError(
            f"model.pythae.nn={yaml_pythae.get('nn')!r} does not fit {spec.display_name}; it needs {need}"
        )
    spatial = tuple(int(s) for s in input_shape)
    in_channels = _positive_int("in_channels", in_channels)
    values["input_dim"] = (in_channels, *spatial)
    try:
        config = spec.config_cls(**values)
    except (ValidationError, TypeError, ValueError) as err:
        msg = " ".join(str(err).split())
        raise ConfigError(f"{spec.display_name} config is invalid: {msg}") from err
    return ResolvedConfig(
        spec=spec,
        config=config,
        spatial_shape=spatial,
        in_channels=in_channels,
        n_features=_positive_int("model.pythae.n_features", yaml_pythae.get("n_features", DEFAULT_N_FEATURES)),
        latent_dim=int(config.latent_dim),
        nn=nn_family,
        reconstruction_loss=recon,
        config_file=config_file,
        overrides=applied,
        custom_loss_class=custom_class,
        custom_loss_params=yaml_pythae.get("custom_loss_params") if custom_class else None,
    )


def _apply_counts(values: dict[str, Any], config_cls: type, counts: Mapping[str, int]) -> None:
    """Fill n_phenotypes / n_confounders* from the data when the config learns them."""
    fields = cast(Any, config_cls).__dataclass_fields__  # a pythae config dataclass

    def setting(key: str) -> Any:
        return values.get(key, fields[key].default) if key in fields else None

    if setting("learn_phenotypes"):
        for key in PHENOTYPE_COUNTS:
            if counts.get(key):
                values[key] = int(counts[key])
    if setting("anti_confounders_strategy"):
        for key in CONFOUNDER_COUNTS:
            if counts.get(key):
                values[key] = int(counts[key])
