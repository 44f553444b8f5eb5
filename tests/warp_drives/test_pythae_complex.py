"""Complex-valued layers, losses and models on plain torch complex tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from Engineering.errors import ConfigError
from Engineering.warp_drives.pythae.custom_models.complex_math import (
    basel1,
    complex_kld,
    complex_sample,
    crecon,
    cvae_reconstruction,
)
from Engineering.warp_drives.pythae.nn.complex_layers import ComplexPair, Hirose, ModSigmoid
from Engineering.warp_drives.pythae.station import PythaeStation

SHAPES = {"2d": (16, 16), "3d": (16, 16, 16)}
MODELS = {"custom_complex_ae": "crecon", "custom_complex_vae": "crecon", "custom_complex_factor_vae": "basel1"}


def station(name: str, dim: str = "2d", loss: str = "crecon", nn_name: str = "cvconvnet") -> PythaeStation:
    yaml_pythae = {"n_features": 4, "nn": nn_name, "reconstruction_loss": loss}
    return PythaeStation.from_options(name, SHAPES[dim], 1, dim == "3d", 8, yaml_pythae)


def test_complex_pair_matches_native_complex_ops() -> None:
    torch.manual_seed(0)
    pair = ComplexPair(lambda: nn.Conv2d(2, 3, 3, padding=1))
    weight = torch.complex(pair.re.weight, pair.im.weight)
    bias = torch.complex(pair.re.bias - pair.im.bias, pair.re.bias + pair.im.bias)
    z = torch.randn(2, 2, 5, 5, dtype=torch.cfloat)
    assert torch.allclose(pair(z), F.conv2d(z, weight, bias, padding=1), atol=1e-5)
    lin = ComplexPair(lambda: nn.Linear(4, 2, bias=False))
    z = torch.randn(3, 4, dtype=torch.cfloat)
    assert torch.allclose(lin(z), z @ torch.complex(lin.re.weight, lin.im.weight).T, atol=1e-5)


def test_activations_keep_phase() -> None:
    z = torch.tensor([3.0 + 4.0j])
    assert torch.allclose(Hirose()(z), torch.tensor([math.tanh(5.0) * (0.6 + 0.8j)], dtype=torch.cfloat))
    assert torch.allclose(ModSigmoid()(z), torch.tensor([1 / (1 + math.exp(-5.0))]))


def test_reconstruction_losses_by_hand() -> None:
    x = torch.zeros(2, 1, 2, 2, dtype=torch.cfloat)
    recon = torch.full((2, 1, 2, 2), 1 + 1j, dtype=torch.cfloat)
    # over the whole batch (8 elements): Σ|Re| = 8, Σ|Im| = 8, Σ||x|−|x̂|| = 8√2 (as in the original)
    assert torch.allclose(crecon(recon, x), torch.tensor(16 + 8 * math.sqrt(2)))
    assert torch.allclose(basel1(recon, x), torch.full((2,), 4 * math.sqrt(2)))
    assert torch.allclose(cvae_reconstruction("basel1mean", recon, x), torch.tensor(math.sqrt(2)))
    assert torch.allclose(cvae_reconstruction("basel1", recon, x), torch.tensor(4 * math.sqrt(2)))
    with pytest.raises(ValueError, match="valid values: crecon, dualcoordsL1"):
        cvae_reconstruction("mse", recon, x)


def test_complex_kld_and_sampling_by_hand() -> None:
    mu = torch.full((1, 3), 1 + 1j, dtype=torch.cfloat)
    lv, log_delta = torch.zeros(1, 3), torch.full((1, 3), -30 + 0j, dtype=torch.cfloat)  # σ = 1, δ ≈ 0
    assert torch.allclose(complex_kld(mu, lv, log_delta), torch.tensor([6.0]), atol=1e-5)  # Σ|μ|² = 3·2
    torch.manual_seed(0)
    lv = torch.full((20000, 1), math.log(2.0))
    z = complex_sample(torch.zeros(20000, 1, dtype=torch.cfloat), lv, torch.full((20000, 1), -30 + 0j), clamp=80.0)
    # δ = 0: z = sqrt(σ/2)(εx + iεy), so E|z|² = σ = 2 split evenly between real and imaginary parts
    assert abs(z.real.var().item() - 1.0) < 0.05 and abs(z.imag.var().item() - 1.0) < 0.05


@pytest.mark.parametrize("dim", SHAPES)
@pytest.mark.parametrize("name", MODELS)
def test_models_train_and_predict(name: str, dim: str) -> None:
    torch.manual_seed(0)
    st = station(name, dim, MODELS[name])
    x = torch.rand(4, 1, *SHAPES[dim])
    out = st(x)
    assert torch.isfinite(out.loss) and not torch.is_complex(out.recon_x)  # |recon_x| for real input
    assert torch.is_complex(out.z)
    groups = st.parameter_groups()
    before = [p[0].detach().clone() for p in groups]
    st.manual_step(out, [torch.optim.Adam(p, lr=1e-3) for p in groups])
    assert all(not torch.equal(b, p[0]) for b, p in zip(before, groups, strict=True))
    pred = st.predict(x)
    assert pred["embedding"].dtype == torch.complex64 and pred["embedding"].shape == (4, 8)
    assert pred["recon_x"].shape == x.shape and not torch.is_complex(pred["recon_x"])
    complex_pred = st.predict(torch.complex(x, x))
    assert torch.is_complex(complex_pred["recon_x"])  # complex data stays complex


@pytest.mark.parametrize("loss", ["dualcoordsL1", "dualcoords", "polar", "basel1", "basel1mean"])
def test_complex_ae_losses(loss: str) -> None:
    torch.manual_seed(0)
    out = station("custom_complex_ae", loss=loss)(torch.rand(2, 1, 16, 16))
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)


def test_bad_settings_fail_clearly() -> None:
    with pytest.raises(ConfigError, match="does not fit custom_complex_vae; it needs nn: cvconvnet"):
        station("custom_complex_vae", nn_name="convnet")
    with pytest.raises(ConfigError, match="does not fit vae; it needs nn: convnet or resnet"):
        station("vae", loss="mse")
    with pytest.raises(ConfigError, match="complex ResNets are not supported"):
        station("custom_complex_vae", nn_name="cvresnet")
    with pytest.raises(ConfigError, match="'l1' is not supported by custom_complex_vae; valid values: crecon, basel1"):
        station("custom_complex_vae", loss="l1")
