"""A tiny DiffAE configuration (net_ch 8, latent 16, batch 2) for the network tests, 2D and 3D."""

from __future__ import annotations

from Engineering.warp_drives.diffae import DiffAEConfig

CASES = [  # (is3D, input_shape)
    (False, (32, 32)),
    (True, (2, 32, 32)),
]


def tiny_config(is3D: bool, input_shape: tuple[int, ...], **yaml) -> DiffAEConfig:
    """The configuration a run with these shapes would build; ``yaml`` overrides DiffAE YAML keys."""
    return DiffAEConfig.from_run(
        is3D=is3D,
        in_channels=1,
        out_channels=1,
        input_shape=input_shape,
        latent_dim=16,
        batch_size=2,
        fp16=False,
        yaml_overrides={"net_ch": 8, **yaml},
    )
