"""Reconstruction engine (taskID 0): the Identity debug model (modelID -1) and the pythae station (modelID 0)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from Engineering.engines.base import BaseEngine, InferenceResult
from Engineering.errors import ConfigError

#: lossID -> loss module of the engine-level reconstruction loss (pythae.md §6.4)
ENGINE_LOSSES: dict[int, type[nn.Module]] = {0: nn.L1Loss, 1: nn.MSELoss, 2: nn.SmoothL1Loss}


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
    """LightningModule for the non-diffusion autoencoders (shell.md taskID 0)."""

    def __init__(self, hparams: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        super().__init__(hparams, config)
        model_id = int(self.hp.get("modelID", 0))
        if model_id == -1:
            self.net: nn.Module = IdentityAE()
        elif model_id == 0:
            raise ConfigError(
                "--modelID 0 (pythae models) is not available yet in this version; use --modelID -1 (Identity debug model)"
            )
        else:
            raise ConfigError(f"--modelID {model_id} is unknown for main_recon.py; valid: -1 (Identity), 0 (pythae)")
        loss_id = int(self.hp.get("lossID", 0))
        if loss_id not in ENGINE_LOSSES:
            raise ConfigError(
                f"--lossID {loss_id} is not available; valid: {sorted(ENGINE_LOSSES)} (0 L1, 1 MSE, 2 SmoothL1)"
            )
        self.loss_fn = ENGINE_LOSSES[loss_id]()

    def _step(self, batch: Mapping[str, Any], stage: str, batch_idx: int) -> torch.Tensor:
        x = batch["inp"]["data"]
        recon = self.net(x)
        loss = self.loss_fn(recon, x)
        self.log(f"{stage}_loss", loss, on_step=stage == "train", on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        self.log_images(stage, x, recon, batch_idx)
        return loss

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor | None:
        if self.automatic_optimization:
            return self._step(batch, "train", batch_idx)
        # manual optimisation: accumulate over accumulate_gradbatch micro-batches, clip, step, zero
        optimiser = self.optimizers()
        loss = self._step(batch, "train", batch_idx)
        self.manual_backward(loss / self.accumulate_gradbatch)
        if (batch_idx + 1) % self.accumulate_gradbatch == 0:
            algo = self.hp.get("grad_clip_algo") or None
            if algo and self.hp.get("grad_clip_val"):
                self.clip_gradients(
                    optimiser, gradient_clip_val=float(self.hp["grad_clip_val"]), gradient_clip_algorithm=algo
                )
            optimiser.step()
            optimiser.zero_grad()
        return None

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val", batch_idx)

    def infer(self, batch: Mapping[str, Any]) -> InferenceResult:
        x = batch["inp"]["data"]
        recon = self.net(x)
        return InferenceResult(embedding=self.net.embed(x), recon=recon, ground_truth=x)
