"""``PythaeStation``: one pythae model with the project's MED nets, plus the optimiser plan an engine needs.

The engine (ReconEngine) uses the station like this::

    station = PythaeStation.from_options(model_name, input_shape, in_channels, is3D, latent_dim, yaml_pythae)
    groups = station.optimiser_groups()            # one optimiser per group, over group.parameters
    # training, one or several optimisers (manual optimisation):
    out = station(x, epoch=current_epoch, dataset_size=n_train)
    station.manual_step(out, optimisers, backward=manual_backward, step=do_step, clip=clip_fn)
    # training, automatic optimisation (only when station.supports_automatic_optimisation): return out.loss
    # validation: out = station(x); log station.loss_terms(out); out.loss is the validation loss
    # test/predict: station.predict(x) → {"embedding": (B, L), "recon_x": (B, C, *spatial), ...}
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any, cast

import torch
from pythae.models.base.base_utils import ModelOutput
from torch import nn

from Engineering.errors import ConfigError
from Engineering.warp_drives.pythae.config import ResolvedConfig, resolve_config
from Engineering.warp_drives.pythae.groups import OptimiserGroup
from Engineering.warp_drives.pythae.model_spec import ADVERSARIAL, BASE, COUPLED, COUPLED_ADVERSARIAL, ModelSpec
from Engineering.warp_drives.pythae.nn import ConvDiscriminator, build_nets
from Engineering.warp_drives.pythae.registry import resolve_model
from Engineering.warp_drives.pythae.wrappers import LSTM_WRAPPABLE, LSTMFactorVAE, LSTMOptions

_GROUPS: dict[str, tuple[OptimiserGroup, ...]] = {
    BASE: (OptimiserGroup("model", (), "loss", "val_loss"),),
    ADVERSARIAL: (
        OptimiserGroup("autoencoder", ("model.encoder", "model.decoder"), "autoencoder_loss", "ae_val_loss"),
        OptimiserGroup("discriminator", ("model.discriminator",), "discriminator_loss", "discriminator_val_loss"),
    ),
    COUPLED: (
        OptimiserGroup("encoder", ("model.encoder",), "encoder_loss", "encoder_val_loss", "update_encoder"),
        OptimiserGroup("decoder", ("model.decoder",), "decoder_loss", "decoder_val_loss", "update_decoder"),
    ),
    COUPLED_ADVERSARIAL: (
        OptimiserGroup("encoder", ("model.encoder",), "encoder_loss", "encoder_val_loss", "update_encoder"),
        OptimiserGroup("decoder", ("model.decoder",), "decoder_loss", "decoder_val_loss", "update_decoder"),
        OptimiserGroup(
            "discriminator",
            ("model.discriminator",),
            "discriminator_loss",
            "discriminator_val_loss",
            "update_discriminator",
        ),
    ),
}

#: ``--pythae_wrapper_mode`` values
WRAPPER_MODES = {0: "none", 1: "LSTM"}

Backward = Callable[..., None]
Clip = Callable[[Any], None]


def _as_complex(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a complex tensor (complex64 for float32 input); complex input is returned unchanged."""
    return x if torch.is_complex(x) else torch.complex(x, torch.zeros_like(x))


def _default_backward(loss: torch.Tensor, **kwargs: Any) -> None:
    loss.backward(**kwargs)


class PythaeStation(nn.Module):
    """Wraps one pythae model (built with the MED encoder/decoder) for a Lightning engine.

    Build it with :meth:`from_options`. Parameter names start with ``model.`` (so the engine's keys are
    ``net.model.encoder…`` as in the original). ``options`` holds the arguments that rebuild it.
    """

    def __init__(self, resolved: ResolvedConfig, options: Mapping[str, Any]) -> None:
        super().__init__()
        self.resolved = resolved
        self.spec: ModelSpec = resolved.spec
        self.options = dict(options)
        self.wrapper: LSTMOptions | None = None
        if self.options.get("wrapper_mode", 0) == 1:
            wrappers = self.options.get("yaml_pythae", {}).get("wrappers") or {}
            self.wrapper = LSTMOptions.from_yaml(wrappers.get("lstm") if isinstance(wrappers, Mapping) else None)
        self.model = self._build_model(resolved, self.wrapper)

    @classmethod
    def from_options(
        cls,
        model_name: str,
        input_shape: Sequence[int],
        in_channels: int,
        is3D: bool,
        latent_dim: int | None,
        yaml_pythae: Mapping[str, Any] | None,
        pythae_config: str = "",
        counts: Mapping[str, int] | None = None,
        wrapper_mode: int = 0,
    ) -> PythaeStation:
        """Resolve the config and build the station.

        Args:
            model_name: ``--pythae_model`` (e.g. ``factor_vae``, ``custom_factor_vae``).
            input_shape: spatial shape, no channel axis: ``(H, W)`` for 2-D, ``(D, H, W)`` for 3-D.
            in_channels: C.
            is3D: must agree with ``len(input_shape)``.
            latent_dim: YAML ``model.latent_dim``; ``None``/≤0 keeps the config file's value.
            yaml_pythae: YAML ``model.pythae``.
            pythae_config: JSON path relative to ``Engineering/warp_drives/pythae/configs/`` (blank = CelebA default).
            counts: ``n_phenotypes``/``n_confounders*`` of the data (models that learn phenotypes/confounders).
            wrapper_mode: ``--pythae_wrapper_mode`` (0 none, 1 LSTM over time frames stacked in the channel axis).
        """
        shape = tuple(int(s) for s in input_shape)
        dims = 3 if is3D else 2
        if len(shape) != dims:
            raise ConfigError(
                f"input_shape {shape} has {len(shape)} spatial axes but is3D={bool(is3D)} needs {dims} "
                f"(input_shape never includes the channel axis)"
            )
        spec = resolve_model(model_name)
        if wrapper_mode not in WRAPPER_MODES:
            raise ConfigError(
                f"--pythae_wrapper_mode {wrapper_mode} is unknown; valid: "
                + ", ".join(f"{k} ({v})" for k, v in WRAPPER_MODES.items())
            )
        if wrapper_mode == 1 and spec.key not in LSTM_WRAPPABLE:
            raise ConfigError(
                f"--pythae_wrapper_mode 1 (LSTM) wraps only {', '.join(LSTM_WRAPPABLE)} / custom_factor_vae, "
                f"not {spec.display_name}; use --pythae_wrapper_mode 0"
            )
        resolved = resolve_config(spec, shape, in_channels, latent_dim, yaml_pythae or {}, pythae_config, counts)
        options = {
            "model_name": model_name,
            "input_shape": shape,
            "in_channels": in_channels,
            "is3D": bool(is3D),
            "latent_dim": latent_dim,
            "yaml_pythae": dict(yaml_pythae or {}),
            "pythae_config": pythae_config,
            "counts": dict(counts or {}),
            "wrapper_mode": int(wrapper_mode),
        }
        return cls(resolved, options)

    @staticmethod
    def _build_model(r: ResolvedConfig, wrapper: LSTMOptions | None = None) -> nn.Module:
        enc_latent, dec_latent = wrapper.frame_latent_dims(r.latent_dim) if wrapper else (r.latent_dim, None)
        encoder, decoder = build_nets(
            r.nn, r.spec.head, r.dims, r.spatial_shape, r.in_channels, r.n_features, enc_latent, dec_latent
        )
        kwargs: dict[str, Any] = {"model_config": r.config, "encoder": encoder, "decoder": decoder}
        if r.custom_loss_class is not None:
            from Engineering.science.losses import build_custom_loss

            if not r.spec.accepts_custom_loss:
                raise ConfigError(
                    f"reconstruction_loss={r.reconstruction_loss!r} is not supported by {r.spec.display_name} "
                    "(only custom_factor_vae and custom_complex_factor_vae accept custom losses)"
                )
            kwargs["custom_recon_loss_func"] = build_custom_loss(r.custom_loss_class, r.custom_loss_params)
        if r.spec.key == "vaegan":
            # pythae's default MLP discriminator has depth 2, below the CelebA reconstruction_layer 3.
            kwargs["discriminator"] = ConvDiscriminator(r.dims, r.spatial_shape, r.in_channels, r.n_features)
        if wrapper is not None:
            kwargs["model_config"] = wrapper.apply_to(r.config)
            return LSTMFactorVAE(**kwargs, options=wrapper, in_channels=r.in_channels)
        try:
            return r.spec.model_cls(**kwargs)
        except AssertionError as err:
            raise ConfigError(f"{r.spec.display_name} rejected its config: {err}") from err

    # ------------------------------------------------------------------ properties
    @property
    def model_name(self) -> str:
        """Registry name as typed by the user (with ``custom_`` for custom models)."""
        return self.spec.display_name

    @property
    def trainer_mode(self) -> str:
        """``base`` | ``adversarial`` | ``coupled`` | ``coupled_adversarial``."""
        return self.spec.trainer_mode

    @property
    def latent_dim(self) -> int:
        """The embedding width written to emb.h5: L (D·L under the bidirectional LSTM wrapper)."""
        return self.resolved.latent_dim * (self.wrapper.directions if self.wrapper else 1)

    @property
    def needs_grad_in_eval(self) -> bool:
        """True for models whose forward/predict take autograd gradients (hvae, rhvae, rae_gp)."""
        return self.spec.needs_grad_in_eval

    @property
    def supports_automatic_optimisation(self) -> bool:
        """True when one optimiser over all parameters is right (Lightning automatic optimisation allowed)."""
        return len(self.optimiser_groups()) == 1

    def resolved_config(self) -> dict[str, Any]:
        """The resolved pythae config plus the station settings, JSON-serialisable (for the run record)."""
        r = self.resolved
        return {
            "model_name": self.model_name,
            "model_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in r.config.to_dict().items()},
            "nn": r.nn,
            "n_features": r.n_features,
            "in_channels": r.in_channels,
            "spatial_shape": list(r.spatial_shape),
            "reconstruction_loss": r.reconstruction_loss,
            "config_file": str(r.config_file) if r.config_file else None,
            "trainer_mode": self.trainer_mode,
            "wrapper": {"lstm": asdict(self.wrapper)} if self.wrapper else None,
        }

    # ------------------------------------------------------------------ forward / predict
    @contextlib.contextmanager
    def _grad_context(self) -> Iterator[None]:
        """Gradients on (and inference mode off) for models that need them during eval."""
        if self.needs_grad_in_eval and not torch.is_grad_enabled():
            with torch.inference_mode(False), torch.enable_grad():
                yield
        else:
            yield

    @property
    def needs_mask(self) -> bool:
        """True when the reconstruction loss is ``custom_masked`` (the batch must carry ``inp.mask``)."""
        return self.resolved.reconstruction_loss == "custom_masked"

    def forward(
        self,
        batch_data: torch.Tensor,
        epoch: int | None = None,
        dataset_size: int | None = None,
        extras: Mapping[str, torch.Tensor] | None = None,
    ) -> ModelOutput:
        """Run the pythae model on ``batch_data`` (B, C, *spatial) and return its full ``ModelOutput``.

        ``extras`` are further model inputs next to ``data``: ``mask`` (``custom_masked``), ``phenotypes``
        (B, n) and ``confounders_*`` (Ultra models, iVAEs); models ignore the keys they do not use.

        Always present: ``loss`` (scalar), ``recon_x``, ``z``; per model also ``recon_loss``, ``reg_loss``,
        ``autoencoder_loss``/``discriminator_loss`` (adversarial), ``encoder_loss``/``decoder_loss`` and
        ``update_*`` flags (coupled), ``recon_x_indices`` (FactorVAE: ``recon_x`` covers only those samples).
        ``epoch`` and ``dataset_size`` reach the models that use them (the original passed neither;
        DisentangledBetaVAE warm-up, VAMP scheduling, BetaTCVAE MSS); ``None`` keeps pythae's fallbacks.
        """
        kwargs: dict[str, Any] = {}
        if epoch is not None:
            kwargs["epoch"] = int(epoch)
        if dataset_size is not None:
            kwargs["dataset_size"] = int(dataset_size)
        with self._grad_context():
            # a fresh tensor so models that flip requires_grad (rae_gp) do not touch the caller's batch
            x = batch_data.detach().clone() if self.needs_grad_in_eval else batch_data
            inputs = {**(extras or {}), "data": x}
            if self.needs_mask and inputs.get("mask") is None:
                raise ConfigError(
                    "reconstruction_loss='custom_masked' needs masks in the batch (inp.mask): "
                    "set data.dataset.data_mask_mode: 2"
                )
            if self.spec.is_complex:
                return self._complex_forward(inputs, kwargs)
            return self.model(inputs, **kwargs)

    def _complex_forward(self, inputs: dict[str, Any], kwargs: dict[str, Any]) -> ModelOutput:
        """Complex models see complex data (real input gets ``+0j``); real input gets ``|recon_x|`` back."""
        x = inputs["data"]
        real = not torch.is_complex(x)
        out = self.model({**inputs, "data": _as_complex(x)}, **kwargs)
        if real:
            out["recon_x"] = out["recon_x"].abs()
        return out

    @torch.no_grad()
    def _predict_plain(self, x: torch.Tensor) -> ModelOutput:
        return self.model.predict(x)  # type: ignore[operator]  # torch stubs: Module.__getattr__ -> Tensor | Module

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Embedding and reconstruction of ``x`` (B, C, *spatial), detached.

        Returns ``embedding`` (B, L): the posterior mean μ (encoder ``embedding``; for rhvae pythae 0.1.2's own
        refined embedding, with ``raw_embedding``); ``recon_x`` (B, C, *spatial) = decode(embedding). A vqvae
        ResNet latent map (B, L, h, w) is flattened to (B, L·h·w). Complex models return a complex64 μ and, for
        real input, ``|recon_x|``; the LSTM wrapper returns (B, D·L) and ``embedding_recurrent`` (B, T, D·L).
        """
        if self.needs_grad_in_eval:
            with torch.inference_mode(False), torch.enable_grad():
                # torch stubs: Module.__getattr__ -> Tensor | Module
                out = self.model.predict(x.detach().clone().requires_grad_(True))  # type: ignore[operator]
        elif self.spec.is_complex:
            out = self._predict_plain(_as_complex(x))
            if not torch.is_complex(x):
                out["recon_x"] = out["recon_x"].abs()
        else:
            out = self._predict_plain(x)
        result = {k: v.detach() for k, v in out.items() if isinstance(v, torch.Tensor)}
        result["embedding"] = result["embedding"].reshape(x.shape[0], -1)
        return result

    @staticmethod
    def loss_terms(output: ModelOutput) -> dict[str, torch.Tensor]:
        """Every tensor in ``output`` whose key contains ``loss`` (what the engine logs as ``train_``/``val_``)."""
        return {k: v for k, v in output.items() if "loss" in k and isinstance(v, torch.Tensor)}

    # ------------------------------------------------------------------ optimisation
    def optimiser_groups(self) -> list[OptimiserGroup]:
        """The optimisers this model needs, in order; one group means one optimiser over everything.

        Models with their own plan (UltraFactorVAE) provide an ``optimiser_groups()`` method.
        """
        own = getattr(self.model, "optimiser_groups", None)
        return list(own()) if callable(own) else list(_GROUPS[self.trainer_mode])

    def group_parameters(self, group: OptimiserGroup) -> list[nn.Parameter]:
        """Parameters of ``group``: every station parameter for the single group, else its modules' parameters."""
        if not group.module_paths:
            return list(self.parameters())
        params: list[nn.Parameter] = []
        for path in group.module_paths:
            params.extend(self.get_submodule(path).parameters())
        return params

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        """``[group_parameters(g) for g in optimiser_groups()]``: build optimiser *i* over entry *i*."""
        return [self.group_parameters(g) for g in self.optimiser_groups()]

    def group_losses(self, output: ModelOutput) -> list[torch.Tensor | None]:
        """The loss each optimiser backpropagates for ``output``; ``None`` where the model switched it off."""
        losses: list[torch.Tensor | None] = []
        for group in self.optimiser_groups():
            active = group.update_flag is None or bool(output.get(group.update_flag, True))
            losses.append(output[group.loss_key] if active else None)
        return losses

    def manual_step(
        self,
        output: ModelOutput,
        optimisers: Sequence[Any] | Any,
        backward: Backward | None = None,
        step: bool = True,
        clip: Clip | None = None,
        zero_between_backwards: bool = False,
    ) -> None:
        """Backward every active group's loss and, if ``step``, clip/step/zero its optimiser.

        Faithful to the original: all backward calls run first with no zeroing in between,
        so e.g. the FactorVAE discriminator also receives the γ·TC gradient of the autoencoder loss; gradients
        are zeroed only right after each optimiser step, so they accumulate over micro-batches while ``step`` is
        False. ``zero_between_backwards=True`` zeroes each optimiser just before its backward, as pythae's
        trainers do (then do not combine it with gradient accumulation). Base models are stepped too
        (the original never stepped them).

        Args:
            output: this batch's :meth:`forward` output.
            optimisers: one optimiser per :meth:`optimiser_groups` entry (a single one may be passed bare).
            backward: e.g. Lightning's ``manual_backward``; called as ``backward(loss, retain_graph=bool)``.
            step: False while accumulating gradients.
            clip: called with each optimiser before its step (e.g. ``lambda o: self.clip_gradients(o, …)``).
        """
        opts: list[Any] = list(optimisers) if isinstance(optimisers, (list, tuple)) else [optimisers]
        losses = self.group_losses(output)
        if len(opts) != len(losses):
            raise ConfigError(
                f"{self.model_name} needs {len(losses)} optimiser(s) "
                f"({', '.join(g.name for g in self.optimiser_groups())}), got {len(opts)}"
            )
        backward = backward or _default_backward
        active = [i for i, loss in enumerate(losses) if loss is not None]
        for i in active:
            if zero_between_backwards:
                opts[i].zero_grad()
            backward(cast(torch.Tensor, losses[i]), retain_graph=i != active[-1])  # i in active: not None
        if not step:
            return
        for i in active:
            if clip is not None:
                clip(opts[i])
            opts[i].step()
            opts[i].zero_grad()
