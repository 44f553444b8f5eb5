"""Typed DiffAE configuration: the ``ukbb_autoenc`` template and its run-time resolution.

The defaults below are the template values (TrainConfig defaults where the template leaves a field alone).
:meth:`DiffAEConfig.from_run` applies the override order of the original engine constructor:
template -> CLI values that collide with config fields -> YAML ``model.DiffAE`` -> ``test_with_TEval`` ->
``fp16`` -> derived values (``img_size``, ``n_dims``, ``group_norm_limit``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from Engineering.errors import ConfigError
from Engineering.science.diffusion import space_timesteps

from .blocks import ATTENTION_MODES
from .shapes import attention_levels, check_input_shape

# Fields computed from others in ``_refresh``; a YAML override of these would be overwritten silently.
_DERIVED = ("img_size", "n_dims", "group_norm_limit")
# Run-time values that come from the CLI, not from YAML ``model.DiffAE``.
_RUN_VALUES = ("is3D", "in_channels", "out_channels", "input_shape", "latent_dim", "batch_size", "fp16")


@dataclass
class DiffAEConfig:
    """Resolved configuration of a DiffAE run (network, diffusion and engine knobs).

    Names follow the original ``TrainConfig`` so that YAML ``model.DiffAE`` keys map one to one.
    """

    # run-time values (CLI)
    is3D: bool = True
    in_channels: int = 1
    out_channels: int = 1
    input_shape: tuple[int, ...] = (50, 128, 128)
    latent_dim: int = 128
    batch_size: int = 16
    lr: float = 1e-4
    fp16: bool = True
    # network (template / TrainConfig defaults)
    net_ch: int = 64
    net_ch_mult: tuple[int, ...] = (1, 1, 2, 3, 4)
    net_enc_channel_mult: tuple[int, ...] = (1, 1, 2, 3, 4, 4)
    net_attn: tuple[int, ...] = (16,)
    net_enc_attn: tuple[int, ...] | None = None
    net_num_res_blocks: int = 2
    net_num_input_res_blocks: int | None = None
    net_enc_num_res_blocks: int = 2
    net_beatgans_attn_head: int = 1
    net_beatgans_resnet_use_zero_module: bool = True
    net_beatgans_resnet_cond_channels: int | None = None
    net_enc_pool: str = "adaptivenonzero"
    dropout: float = 0.1
    # Resampling keeps the depth axis in 3D (the original's behaviour, docs/differences.md D8); False halves depth too.
    keep_depth: bool = True
    # Execution only (the state dict is the same): "sdpa" fused attention, "math" the original's formula bit for
    # bit; grad_checkpoint recomputes res/attention block activations in backward (less memory, more time).
    attention: str = "sdpa"
    grad_checkpoint: bool = False
    # diffusion
    T: int = 1000
    T_eval: int = 20
    T_inv: int = 200
    T_step: int = 100
    beta_scheduler: str = "linear"
    # engine
    sample_size: int = 32
    sample_every_batches: int = 1000
    ema_decay: float = 0.9999
    grad_clip: float = 1.0
    optimizer: str = "adam"
    weight_decay: float = 0.0
    warmup: int = 0
    accum_batches: int = 1
    # derived (see _refresh)
    img_size: int = field(default=128)
    n_dims: int = field(default=3)
    group_norm_limit: int = field(default=32)

    @property
    def embed_channels(self) -> int:
        """Width of the time embedding and of the z_sem conditioning (= latent_dim)."""
        return self.latent_dim

    @property
    def style_ch(self) -> int:
        """Semantic-encoder output size (= z_sem size = latent_dim)."""
        return self.latent_dim

    @classmethod
    def overridable_keys(cls) -> list[str]:
        """Keys that YAML ``model.DiffAE`` may set."""
        return [f.name for f in dataclasses.fields(cls) if f.name not in _DERIVED + _RUN_VALUES]

    @classmethod
    def from_run(
        cls,
        *,
        is3D: bool,
        in_channels: int,
        out_channels: int,
        input_shape: tuple[int, ...],
        latent_dim: int,
        batch_size: int,
        fp16: bool,
        yaml_overrides: Mapping[str, Any],
        lr: float = 1e-4,
        test_with_TEval: bool = True,
        accum_batches: int = 1,
    ) -> DiffAEConfig:
        """Resolve a run's configuration.

        Args:
            is3D, in_channels, out_channels, input_shape, batch_size, lr: CLI values.
            latent_dim: YAML ``model.latent_dim`` (embed/style width); must be a positive int (docs/differences.md D9).
            fp16: ``ampmode not in {"32", "32-true"}``.
            yaml_overrides: YAML ``model.DiffAE`` mapping, written over the template.
            test_with_TEval: if True, ``T_inv = T_step = T_eval`` (applied after the YAML).
            accum_batches: gradient-accumulation factor; the EMA steps once per optimiser step (docs/differences.md D4).

        Raises:
            ConfigError: unknown YAML key, wrongly typed value, or invalid shape/step count.
        """
        if not isinstance(latent_dim, int) or isinstance(latent_dim, bool) or latent_dim < 1:
            raise ConfigError(f"DiffAE needs a positive integer model.latent_dim, got {latent_dim!r}")
        cfg = cls(
            is3D=bool(is3D),
            in_channels=in_channels,
            out_channels=out_channels,
            input_shape=tuple(int(s) for s in input_shape),
            latent_dim=latent_dim,
            batch_size=batch_size,
            lr=float(lr),
            fp16=bool(fp16),
            accum_batches=accum_batches,
        )
        cfg._apply_overrides(yaml_overrides)
        if test_with_TEval:
            cfg.T_inv = cfg.T_step = cfg.T_eval
        cfg._refresh()
        cfg.validate()
        return cfg

    def _apply_overrides(self, overrides: Mapping[str, Any]) -> None:
        valid = self.overridable_keys()
        types = {f.name: f.type for f in dataclasses.fields(self)}
        for key, value in overrides.items():
            if key not in valid:
                raise ConfigError(f"unknown model.DiffAE key {key!r}; valid keys: {', '.join(valid)}")
            setattr(self, key, _coerce(key, value, types[key], getattr(self, key)))

    def _refresh(self) -> None:
        """Derived values (``refresh_values``): img_size over ALL axes (docs/differences.md D7), dims, GN limit."""
        self.img_size = max(self.input_shape)
        self.n_dims = 3 if self.is3D else 2
        self.group_norm_limit = min(32, self.net_ch)

    def validate(self) -> None:
        """Check shapes, widths and step counts; raise :class:`ConfigError` naming the bad value."""
        expected = 3 if self.is3D else 2
        if len(self.input_shape) != expected or min(self.input_shape) < 1:
            raise ConfigError(
                f"input_shape {self.input_shape!r} must have {expected} positive sizes for is3D={self.is3D}"
            )
        for name in ("in_channels", "out_channels", "net_ch", "batch_size", "T", "net_num_res_blocks"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.accum_batches < 1:
            raise ConfigError(f"accum_batches must be >= 1, got {self.accum_batches!r}")
        if self.net_num_input_res_blocks not in (None, self.net_num_res_blocks):
            raise ConfigError(
                f"net_num_input_res_blocks {self.net_num_input_res_blocks!r} must be null or equal "
                f"net_num_res_blocks ({self.net_num_res_blocks})"
            )
        if self.net_enc_pool != "adaptivenonzero":
            raise ConfigError(f"net_enc_pool {self.net_enc_pool!r} is not supported; valid: 'adaptivenonzero'")
        if self.net_beatgans_attn_head != 1:
            raise ConfigError(f"net_beatgans_attn_head must be 1 (single head), got {self.net_beatgans_attn_head!r}")
        if self.beta_scheduler != "linear":
            raise ConfigError(f"beta_scheduler {self.beta_scheduler!r} is not supported; valid: 'linear'")
        if self.attention not in ATTENTION_MODES:
            raise ConfigError(
                f"model.DiffAE.attention must be one of {', '.join(ATTENTION_MODES)}, got {self.attention!r}"
            )
        if not 0.0 <= self.ema_decay <= 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1], got {self.ema_decay!r}")
        self._validate_spatial()
        for name in ("T_eval", "T_inv", "T_step"):
            space_timesteps(self.T, getattr(self, name))

    def _validate_spatial(self) -> None:
        """The network must be able to take input_shape (rule derived from the levels: see shapes.py)."""
        check_input_shape(self.input_shape, self.is3D, self.keep_depth, self.net_ch_mult, self.net_enc_channel_mult)

    def attention_levels(self) -> list[int]:
        """UNet levels with attention, placed by the nominal counter from ``img_size`` (docs/differences.md D7)."""
        return attention_levels(self.img_size, len(self.net_ch_mult), self.net_attn)


def _coerce(key: str, value: Any, annotation: Any, current: Any) -> Any:
    """Convert a YAML/CLI value to the field's type; raise ConfigError naming key and value if impossible."""
    ann = str(annotation)
    if value is None and "None" in ann:
        return None
    if ann.startswith("tuple"):
        if isinstance(value, (list, tuple)) and all(_is_int(v) for v in value):
            return tuple(int(v) for v in value)
        raise ConfigError(f"model.DiffAE.{key} must be a list of integers, got {value!r}")
    if ann.startswith("bool"):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"model.DiffAE.{key} must be true or false, got {value!r}")
    if ann.startswith("int"):
        if _is_int(value):
            return int(value)
        raise ConfigError(f"model.DiffAE.{key} must be an integer, got {value!r}")
    if ann.startswith("float"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"model.DiffAE.{key} must be a number, got {value!r}")
    if isinstance(value, type(current)):
        return value
    raise ConfigError(f"model.DiffAE.{key} must be of type {type(current).__name__}, got {value!r}")


def _is_int(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())
