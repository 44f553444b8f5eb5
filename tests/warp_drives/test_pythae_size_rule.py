"""The pythae nets' size rule (multiples of 8 for ConvNet, 16 for ResNet, at least 16) is exactly what they take.

With the check switched off, each encoder/decoder pair is run on every size from 1 to 64 along one axis; the
sizes that give back a reconstruction of the input's shape must be exactly the sizes the rule accepts.
"""

from __future__ import annotations

import pytest
import torch

from Engineering.errors import ConfigError
from Engineering.warp_drives.pythae.nn import base, convnets, resnets


def _takes(encoder_cls, decoder_cls, size: int) -> bool:
    try:
        encoder, decoder = encoder_cls(2, (size, 32), 1, 4, 3), decoder_cls(2, (size, 32), 1, 4, 3)
        x = torch.rand(2, 1, size, 32)
        with torch.no_grad():
            out = decoder(encoder(x)["embedding"])["reconstruction"]
    except (RuntimeError, ValueError):
        return False
    return out.shape == x.shape


@pytest.mark.parametrize(
    "module, encoder_cls, decoder_cls, multiple",
    [
        (convnets, convnets.ConvEncoder, convnets.ConvDecoder, convnets.CONV_MULTIPLE),
        (resnets, resnets.ResNetEncoder, resnets.ResNetDecoder, resnets.RESNET_MULTIPLE),
    ],
    ids=["convnet", "resnet"],
)
def test_size_rule_is_what_the_nets_take(monkeypatch, module, encoder_cls, decoder_cls, multiple):
    def accepts(size: int) -> bool:
        try:
            base.check_spatial_shape((size, 32), 2, multiple, "test")
        except ConfigError:
            return False
        return True

    sizes = range(1, 65)
    ruled = [s for s in sizes if accepts(s)]
    monkeypatch.setattr(module, "check_spatial_shape", lambda shape, *_: tuple(int(s) for s in shape))
    taken = [s for s in sizes if _takes(encoder_cls, decoder_cls, s)]
    assert taken == ruled and ruled
