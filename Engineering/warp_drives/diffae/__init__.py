"""DiffAE warp drive: configuration, networks (2D/3D autoencoding UNet + semantic encoder), EMA."""

from .config import DiffAEConfig
from .ema import ema_update
from .unet import BeatGANsAutoencUNet, SemanticEncoder, build_diffae_net

__all__ = ["BeatGANsAutoencUNet", "DiffAEConfig", "SemanticEncoder", "build_diffae_net", "ema_update"]
