"""Encode / invert / decode helpers an engine uses at validation and test time (diffae.md §3.4-§3.6, §4.4)."""

from __future__ import annotations

import torch

from Engineering.science.diffusion import GaussianDiffusion

from .unet import BeatGANsAutoencUNet


@torch.no_grad()
def inference_pass(
    net: BeatGANsAutoencUNet,
    diffusion: GaussianDiffusion,
    x: torch.Tensor,
    T_inv: int,
    T_step: int,
    emb_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """z_sem and the [0, 1] reconstruction of x: encode -> DDIM inversion (T_inv) -> DDIM decoding (T_step).

    The same network encodes, inverts and decodes (D1 fixed: the original always inverted with the EMA net).

    Args:
        net: the network to use (``ema_net`` for the default ``test_ema``).
        diffusion: the full T-step process (respaced internally).
        x: (B, C, *S) input in [-1, 1].
        emb_only: skip inversion and decoding (``test_emb_only``).

    Returns:
        (z_sem (B, latent), recon (B, C, *S) = (x̂0 + 1) / 2 or None).
    """
    z_sem = net.encode(x)
    if emb_only:
        return z_sem, None
    x_T = diffusion.ddim_reverse_sample_loop(net, x, z_sem, T_inv)
    x0 = diffusion.ddim_sample_loop(net, x_T, z_sem, T_step)
    return z_sem, (x0 + 1) / 2
