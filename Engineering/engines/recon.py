"""Reconstruction engine (taskID 0): the Identity debug model (modelID -1) and the pythae station (modelID 0).

One shared step for train and validation. Every model trains under manual optimisation (the
main_recon default; base models are stepped too, unlike the original) with gradient accumulation and clipping;
single-optimiser models may instead use Lightning's automatic optimisation (``--auto_optim``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from Engineering.configuration.run_config import RunConfig
from Engineering.engines.base import BaseEngine, build_lr_scheduler, build_optimiser
from Engineering.engines.recon_build import EXTRA_PREDICTIONS, batch_extras, build_station
from Engineering.errors import ConfigError
from Engineering.outputs.collector import InferenceResult
from Engineering.science.losses import PERCEPTUAL_LOSSES, build_engine_loss

if TYPE_CHECKING:
    from Engineering.warp_drives.pythae.station import PythaeStation

log = logging.getLogger("imlatent")


class IdentityAE(nn.Module):
    """Debug model (modelID -1): reconstruction = a * x + b, embedding = per-channel mean and std.

    It has two learnable scalars so that a training loop really optimises something, which makes it the
    fastest way to exercise the whole pipeline (data, run control, checkpoints, outputs).
    Input (B, C, *spatial); embedding (B, 2C).
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.5))
        self.shift = nn.Parameter(torch.tensor(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)  # (B, C, N)
        return torch.cat([flat.mean(-1), flat.std(-1)], dim=1)


class ReconEngine(BaseEngine):
    """LightningModule for the non-diffusion autoencoders (taskID 0).

    ``self.net`` is the :class:`IdentityAE` (modelID -1) or a
    :class:`~Engineering.warp_drives.pythae.station.PythaeStation` (modelID 0), so checkpoint keys read
    ``net.model.encoder…`` as in the original.
    """

    SCRIPT = "recon"

    def __init__(self, hparams: RunConfig | Mapping[str, Any], config: Mapping[str, Any] | None = None) -> None:
        super().__init__(hparams, config)
        model_id, loss_id = self.cfg.model.modelID, self.cfg.training.lossID
        # lossID is validated for every model; only the Identity model uses the engine loss. pythae models take the
        # perceptual ones (-1, -2) through reconstruction_loss "custom", built once inside the station.
        perceptual_pythae = model_id == 0 and loss_id in PERCEPTUAL_LOSSES
        self.loss_fn = nn.L1Loss() if perceptual_pythae else build_engine_loss(loss_id, self.cfg)
        if model_id == -1:
            self.net: nn.Module = IdentityAE()
        elif model_id == 0:
            self.net = build_station(self.cfg)
            if perceptual_pythae and self.net.resolved.reconstruction_loss != "custom":
                raise ConfigError(
                    f"--lossID {loss_id} ({PERCEPTUAL_LOSSES[loss_id]}) reaches a pythae model only as its "
                    f"reconstruction loss: add --model§pythae§reconstruction_loss custom (custom_factor_vae, "
                    f"custom_complex_factor_vae), got {self.net.resolved.reconstruction_loss!r}"
                )
            if self.automatic_optimization and not self.net.supports_automatic_optimisation:
                groups = self.net.optimiser_groups()
                raise ConfigError(
                    f"--auto_optim cannot train {self.net.model_name}: it needs {len(groups)} optimisers "
                    f"({', '.join(g.name for g in groups)}); run with --no-auto_optim (manual optimisation)"
                )
        else:
            raise ConfigError(f"--modelID {model_id} is unknown for main_recon.py; valid: -1 (Identity), 0 (pythae)")

    @property
    def is_pythae(self) -> bool:
        return not isinstance(self.net, IdentityAE)

    def architecture(self) -> dict[str, Any]:
        arch = super().architecture()
        arch["modelID"] = self.cfg.model.modelID
        if self.is_pythae:  # the model family and its encoder/decoder nets fix the state dict
            station = cast("PythaeStation", self.net)
            arch["pythae_model"] = station.model_name
            arch["pythae_nn"] = station.resolved.nn
            arch["pythae_n_features"] = station.resolved.n_features
            arch["pythae_wrapper_mode"] = self.cfg.pythae.pythae_wrapper_mode
        return arch

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        if not self.is_pythae:
            return super().configure_optimizers()
        groups = cast("PythaeStation", self.net).optimiser_groups()
        training = self.cfg.training
        wanted = training.n_optimisers
        if wanted > 0 and wanted != len(groups):
            raise ConfigError(
                f"--n_optimisers {wanted} does not fit {self.net.model_name}, which needs {len(groups)} "
                f"({', '.join(g.name for g in groups)}); use --n_optimisers -1 to infer it"
            )
        configs = []
        for group in groups:
            params = cast("PythaeStation", self.net).group_parameters(group)
            optimiser = build_optimiser(training.optimiserID, params, self.lr)
            entry: dict[str, Any] = {"optimizer": optimiser}
            sched = build_lr_scheduler(training.lr_decay_type, training.lr_decay, optimiser)
            if sched is not None:
                entry["lr_scheduler"] = sched
            configs.append(entry)
        return configs[0] if len(configs) == 1 else configs

    def _clipper(self) -> Any | None:
        training = self.cfg.training
        if not training.clips:
            return None

        def clip(optimiser: Any) -> None:
            self.clip_gradients(
                optimiser, gradient_clip_val=training.grad_clip_val, gradient_clip_algorithm=training.grad_clip_algo
            )

        return clip

    def _backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """Manual backward of one micro-batch, scaled like Lightning's automatic accumulation."""
        self.manual_backward(loss / self.accumulate_gradbatch, **kwargs)

    def _optimisers(self) -> list[Any]:
        opts = self.optimizers()
        return list(opts) if isinstance(opts, (list, tuple)) else [opts]

    # ------------------------------------------------------------------ steps
    def _dataset_size(self) -> int | None:
        trainer = self._trainer
        dataset = getattr(getattr(trainer, "datamodule", None), "train_ds", None) if trainer is not None else None
        return len(dataset) if dataset is not None else None

    def _log_terms(self, stage: str, terms: Mapping[str, torch.Tensor], batch_size: int) -> None:
        for key, value in terms.items():
            self.log(f"{stage}_{key}", value.detach().float().mean(), on_step=True, on_epoch=True,
                     sync_dist=True, batch_size=batch_size)  # fmt: skip

    def _pythae_step(self, batch: Mapping[str, Any], stage: str, batch_idx: int) -> Any:
        """Forward + logging of one batch; returns the model output (train and validation share it)."""
        x = batch["inp"]["data"]
        out = self.net(
            x,
            epoch=self.current_epoch if self._trainer is not None else None,
            dataset_size=self._dataset_size() if stage == "train" else None,
            extras=batch_extras(batch),
        )
        self._log_terms(stage, cast("PythaeStation", self.net).loss_terms(out), x.shape[0])
        recon = out["recon_x"]
        gt = x[out["recon_x_indices"]] if "recon_x_indices" in out.keys() else x
        if stage == "val" and not torch.is_complex(recon):
            from Engineering.outputs import median_ssim

            value = median_ssim(gt.detach().float().cpu().numpy(), recon.detach().float().cpu().numpy())
            self.log("val_ssim", value, on_step=True, on_epoch=True, sync_dist=True, batch_size=x.shape[0])
        self.log_images(stage, gt, recon, batch_idx)
        return out

    def _identity_step(self, batch: Mapping[str, Any], stage: str, batch_idx: int) -> torch.Tensor:
        x = batch["inp"]["data"]
        recon = self.net(x)
        loss = self.loss_fn(recon, x)
        self.log(f"{stage}_loss", loss, on_step=stage == "train", on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        self.log_images(stage, x, recon, batch_idx)
        return loss

    def _identity_manual_step(self, loss: torch.Tensor, step: bool) -> None:
        (optimiser,) = self._optimisers()
        self._backward(loss)
        if not step:
            return
        clip = self._clipper()
        if clip is not None:
            clip(optimiser)
        optimiser.step()
        optimiser.zero_grad()

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor | None:
        step = (batch_idx + 1) % self.accumulate_gradbatch == 0 or self._last_batch_of_epoch(batch_idx)
        if not self.is_pythae:
            loss = self._identity_step(batch, "train", batch_idx)
            if self.automatic_optimization:
                return loss
            self._identity_manual_step(loss, step)
            return None
        out = self._pythae_step(batch, "train", batch_idx)
        if self.automatic_optimization:
            return out["loss"]
        cast("PythaeStation", self.net).manual_step(
            out, self._optimisers(), backward=self._backward, step=step, clip=self._clipper()
        )
        return None

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        if not self.is_pythae:
            return self._identity_step(batch, "val", batch_idx)
        if "FactorVAE" in getattr(self.net.model, "model_name", "") and batch["inp"]["data"].shape[0] < 2:
            # FactorVAE losses permute a second half-batch: a one-sample validation batch is scored as a pair of
            # copies, so a validation split of one sample still yields val_loss
            log.debug(
                "validation batch %d has one sample; %s scores it as a duplicated pair", batch_idx, self.net.model_name
            )
            batch = _duplicated(batch)
        return self._pythae_step(batch, "val", batch_idx)["loss"]

    def infer(self, batch: Mapping[str, Any]) -> InferenceResult:
        x = batch["inp"]["data"]
        if not self.is_pythae:
            return InferenceResult(embedding=cast(IdentityAE, self.net).embed(x), recon=self.net(x), ground_truth=x)
        pred = cast("PythaeStation", self.net).predict(x)
        extra = {tag: pred[tag] for tag in EXTRA_PREDICTIONS if tag in pred}
        return InferenceResult(embedding=pred["embedding"], recon=pred["recon_x"], ground_truth=x, extra=extra)


def _duplicated(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The batch with every tensor (and list) repeated twice along the batch axis."""

    def twice(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return torch.cat([value, value])
        if isinstance(value, Mapping):
            return {k: twice(v) for k, v in value.items()}
        if isinstance(value, list):
            return [twice(v) for v in value] if value and isinstance(value[0], torch.Tensor) else value * 2
        return value

    return twice(batch)
