"""Networks of the latent engine (taskID 2): the linear latent regressor/classifier head and its EMA shadow."""

from Engineering.science.ema import ema_copy, ema_update
from Engineering.warp_drives.latent.heads import LATENT_MODELS, build_latent_head

__all__ = ["LATENT_MODELS", "build_latent_head", "ema_copy", "ema_update"]
