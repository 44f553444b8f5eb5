"""DiffAE engine (taskID 1): training, EMA, validation by reconstruction SSIM, latent/recon inference.

Module contents follow the original's exactly so that published checkpoints load strictly: ``net`` (the
autoencoding UNet with its semantic encoder at ``net.encoder``), ``ema_net`` (its EMA copy) and the
persistent buffer ``x_T`` (sample_size, in_channels, *input_shape) of fixed sampling noise.
Dn in comments names the entry of docs/differences.md for a deliberate difference from the original.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from Engineering.configuration.run_config import RunConfig
from Engineering.engines.base import BaseEngine
from Engineering.outputs.collector import InferenceResult
from Engineering.science.diffusion import GaussianDiffusion
from Engineering.science.ema import ema_copy, ema_update
from Engineering.science.metrics import median_ssim
from Engineering.warp_drives.diffae import DiffAEConfig, build_diffae_net

HALF_PRECISION = {"16", "16-mixed", "bf16", "bf16-mixed", "bf16-true", "16-true"}


class DiffAEEngine(BaseEngine):
    """LightningModule of the 2D/3D diffusion autoencoder."""

    x_T: torch.Tensor  # registered buffer (see __init__)
    SCRIPT = "diffae"

    def __init__(self, hparams: RunConfig | Mapping[str, Any], config: Mapping[str, Any] | None = None) -> None:
        super().__init__(hparams, config)
        self.automatic_optimization = True  # DiffAE needs Lightning's automatic optimisation
        cfg = self.cfg  # latent size and shape rank are checked when the configuration is built
        model, ampmode = cfg.model, cfg.run.ampmode
        self.input_shape = cfg.data.shape
        assert model.latent_dim is not None  # RunConfig refuses a DiffAE configuration without one
        self.conf = DiffAEConfig.from_run(
            is3D=model.is_3d,
            in_channels=model.in_channels,
            out_channels=model.out_channels,
            input_shape=self.input_shape,
            latent_dim=model.latent_dim,
            batch_size=cfg.run.batch_size,
            fp16=ampmode not in {"32", "32-true"},
            yaml_overrides=cfg.diffae.template,
            lr=self.lr,
            test_with_TEval=cfg.diffae.test_with_TEval,
            accum_batches=self.accumulate_gradbatch,
        )
        self.net = build_diffae_net(self.conf)
        self.ema_net = ema_copy(self.net)
        self.register_buffer("x_T", torch.randn(self.conf.sample_size, model.in_channels, *self.input_shape))
        self.diffusion = GaussianDiffusion.from_config(self.conf)
        self.T_inv, self.T_step = int(self.conf.T_inv), int(self.conf.T_step)  # = T_eval under --test_with_TEval
        self.amp_dtype = torch.bfloat16 if ampmode.startswith("bf16") else torch.float16
        self.use_amp = ampmode in HALF_PRECISION
        self.grey2rgb = cfg.data.grey2RGB
        self._generator: torch.Generator | None = None

    def train(self, mode: bool = True) -> DiffAEEngine:
        """Switch train/eval mode; the EMA network always stays in eval mode (docs/differences.md D17)."""
        super().train(mode)
        self.ema_net.eval()
        return self

    # ------------------------------------------------------------------ helpers
    def _autocast(self, device: torch.device) -> Any:
        """Autocast around network calls with the run's own half dtype (docs/differences.md D6); fp32 elsewhere."""
        if not self.use_amp or device.type != "cuda":
            return nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def _model_fn(self, net: nn.Module) -> Callable[..., torch.Tensor]:
        def call(x: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            with self._autocast(x.device):
                return net(x, t, **kwargs).float()

        return call

    def _rng(self, device: torch.device) -> torch.Generator:
        """Per-rank generator for timesteps and noise, so DDP ranks draw different t (docs/differences.md D14)."""
        if self._generator is None or self._generator.device != device:
            seed = int(torch.initial_seed() % (2**31)) + 1000 * int(self.global_rank)
            self._generator = torch.Generator(device=device).manual_seed(seed)
        return self._generator

    def denoiser(self, use_ema: bool = True) -> Callable[..., torch.Tensor]:
        """The ε-prediction callable of the EMA (or base) network, as the DDIM loops of the diffusion take it."""
        return self._model_fn(self.ema_net if use_ema else self.net)

    def encode(self, x: torch.Tensor, use_ema: bool = True) -> torch.Tensor:
        """Semantic latent z_sem (B, latent_dim) of inputs in [-1, 1]."""
        net = self.ema_net if use_ema else self.net
        with self._autocast(x.device):
            return net.encoder(x).float()

    def render(
        self, x: torch.Tensor, cond: torch.Tensor, T_inv: int, T_step: int, use_ema: bool = True
    ) -> torch.Tensor:
        """DDIM inversion (T_inv steps) then decoding (T_step steps) with one network (D1); output in [0, 1]."""
        fn = self.denoiser(use_ema)
        x_T = self.diffusion.ddim_reverse_sample_loop(fn, x, cond=cond, steps=T_inv)
        x0 = self.diffusion.ddim_sample_loop(fn, x_T, cond=cond, steps=T_step)
        return (x0 + 1) / 2

    def metric_channels(self, x: torch.Tensor) -> torch.Tensor:
        """Keep channel 1 only for grey2RGB modes 0 and 2 (the grey channel), as the original does."""
        return x[:, 1:2] if self.grey2rgb in (0, 2) else x

    # ------------------------------------------------------------------ training
    def configure_optimizers(self) -> Any:
        optimiser = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=float(self.conf.weight_decay))
        warmup = int(self.conf.warmup)
        if warmup <= 0:
            return optimiser
        sched = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: min(step, warmup) / warmup)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        x0 = batch["inp"]["data"].float()
        gen = self._rng(x0.device)
        t = torch.randint(0, int(self.conf.T), (x0.shape[0],), device=x0.device, generator=gen)
        noise = torch.randn(x0.shape, device=x0.device, generator=gen, dtype=x0.dtype)
        losses = self.diffusion.training_losses(self._model_fn(self.net), x0, t, noise=noise)
        loss = losses["loss"].mean()
        self.log("train_loss", loss, on_step=True, on_epoch=True, batch_size=x0.shape[0], sync_dist=True)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # clip once (docs/differences.md D3): Lightning clips when --grad_clip_algo is set;
        # otherwise clip to the config's grad_clip
        training = self.cfg.training
        lightning_clips_norm = training.clips and training.grad_clip_algo == "norm"
        if not lightning_clips_norm and float(self.conf.grad_clip) > 0:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, float(self.conf.grad_clip))

    def on_train_batch_end(self, outputs: Any, batch: Mapping[str, Any], batch_idx: int) -> None:
        # one EMA step per optimiser step (linked to gradient accumulation; docs/differences.md D4)
        if (batch_idx + 1) % int(self.conf.accum_batches) == 0 or self._last_batch_of_epoch(batch_idx):
            ema_update(self.ema_net, self.net, float(self.conf.ema_decay))
            self._log_samples(batch["inp"]["data"])

    def _log_samples(self, x_start: torch.Tensor) -> None:
        """Every sample_every_batches optimiser steps: random samples from x_T with and without EMA (D5/D19)."""
        every = int(self.conf.sample_every_batches)
        writer = self.tensorboard()
        if writer is None or every <= 0 or self.global_step % every != 0:
            return
        n = min(len(self.x_T), x_start.shape[0])
        self.net.eval()  # no dropout while sampling; train mode is restored below
        with torch.no_grad():
            for suffix, use_ema in (("", False), ("_ema", True)):
                cond = self.encode(x_start[:n].float(), use_ema)
                fn = self._model_fn(self.ema_net if use_ema else self.net)
                gen = self.diffusion.ddim_sample_loop(fn, self.x_T[:n], cond=cond, steps=int(self.conf.T_eval))
                writer.add_image(f"sample{suffix}/generated", _grid((gen + 1) / 2), self.global_step)
                writer.add_image(f"sample{suffix}/real", _grid((x_start[:n] + 1) / 2), self.global_step)
        self.net.train()

    # ------------------------------------------------------------------ validation and test
    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        x = batch["inp"]["data"].float()
        gt = self.metric_channels((x + 1) / 2).cpu().numpy()
        scores = {}
        for tag, use_ema in (("ema", True), ("base", False)):
            cond = self.encode(x, use_ema)
            recon = self.metric_channels(self.render(x, cond, int(self.conf.T_eval), int(self.conf.T_eval), use_ema))
            scores[tag] = float(median_ssim(gt, recon.float().cpu().numpy()))
            self.log_images(f"val_{tag}", x, recon * 2 - 1, batch_idx, signed=True)
        bs = x.shape[0]
        self.log("val_ssim_ema", scores["ema"], on_step=True, on_epoch=True, batch_size=bs, sync_dist=True)
        self.log("val_ssim_base", scores["base"], on_step=True, on_epoch=True, batch_size=bs, sync_dist=True)
        self.log("val_loss", -scores["ema"], on_step=True, on_epoch=True, batch_size=bs, sync_dist=True)

    def infer(self, batch: Mapping[str, Any]) -> InferenceResult:
        x = batch["inp"]["data"].float()
        use_ema = self.cfg.diffae.test_ema
        z = self.encode(x, use_ema)
        if self.cfg.diffae.test_emb_only:
            return InferenceResult(embedding=z)
        recon = self.render(x, z, self.T_inv, self.T_step, use_ema)
        return InferenceResult(
            embedding=z, recon=self.metric_channels(recon), ground_truth=self.metric_channels((x + 1) / 2)
        )

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        return self.encode(batch["inp"]["data"].float(), self.cfg.diffae.test_ema)

    def architecture(self) -> dict[str, Any]:
        arch = super().architecture()
        arch.update(net_ch=int(self.conf.net_ch), sample_size=int(self.conf.sample_size))
        conf = self.conf
        # the rest of what fixes the state dict's keys and shapes (compared when a checkpoint does not fit)
        for key in ("net_ch_mult", "net_enc_channel_mult", "net_attn", "net_enc_attn"):
            value = getattr(conf, key)
            arch[key] = list(value) if value is not None else None
        for key in ("net_num_res_blocks", "net_enc_num_res_blocks", "net_beatgans_resnet_cond_channels"):
            arch[key] = getattr(conf, key)
        return arch


def _grid(images: torch.Tensor) -> torch.Tensor:
    """(N, C, [D,] H, W) in [0, 1] -> one (1, H, N*W) image of channel 0 (central depth slice in 3D)."""
    images = images.detach().float().cpu()[:, 0]
    if images.ndim == 4:  # (N, D, H, W)
        images = images[:, images.shape[1] // 2]
    return torch.cat(list(images.clamp(0, 1)), dim=-1).unsqueeze(0)


__all__ = ["DiffAEEngine"]
