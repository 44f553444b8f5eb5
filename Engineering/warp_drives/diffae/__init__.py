"""DiffAE warp drive: configuration, networks (2D/3D autoencoding UNet + semantic encoder), EMA."""

from Engineering.science.ema import ema_update

from .config import DiffAEConfig
from .unet import BeatGANsAutoencUNet, SemanticEncoder, build_diffae_net

__all__ = ["BeatGANsAutoencUNet", "DiffAEConfig", "SemanticEncoder", "build_diffae_net", "ema_update"]
