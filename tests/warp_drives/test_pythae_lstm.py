"""LSTM wrapper (the original's intended behaviour): shapes, loss, no subject mixing, engine training step, errors."""

from __future__ import annotations

import pytest
import torch

from Engineering.errors import ConfigError
from Engineering.warp_drives.pythae.station import PythaeStation
from Engineering.warp_drives.pythae.wrappers import LSTMOptions
from tests.engines.test_recon_engine import changed_groups, make_engine

L, T = 8, 3


def station(name: str = "custom_factor_vae", dim3: bool = False, **lstm: object) -> PythaeStation:
    shape = (16, 16, 16) if dim3 else (16, 16)
    yaml_pythae = {"n_features": 4, "reconstruction_loss": "mse", "wrappers": {"lstm": {"im_encode_factor": 2, **lstm}}}
    return PythaeStation.from_options(name, shape, 1, dim3, L, yaml_pythae, wrapper_mode=1)


@pytest.mark.parametrize(("bidirectional", "d"), [(True, 2), (False, 1)])
@pytest.mark.parametrize("dim3", [False, True])
def test_forward_loss_and_predict_shapes(bidirectional: bool, d: int, dim3: bool) -> None:
    torch.manual_seed(0)
    st = station(dim3=dim3, bidirectional=bidirectional, num_layers=2)
    cfg = st.model.model_config
    assert (cfg.lstm_im_encode_factor, cfg.lstm_num_layers, cfg.lstm_bidirectional) == (2, 2, bidirectional)
    assert st.model.encoder.latent_dim == 2 * L and st.model.decoder.latent_dim == d * 2 * L
    spatial = (16, 16, 16) if dim3 else (16, 16)
    x = torch.rand(5, T, *spatial)  # odd batch: halves of 3 and 2 subjects
    out = st(x)
    assert out.recon_x.shape == (3, T, *spatial) and out.recon_x_indices.shape == (3,)
    assert out.z.shape == (3 * T, d * L) and out.z_bis_permuted.shape == (2 * T, d * L)
    assert all(out[k].dim() == 0 and torch.isfinite(out[k]) for k in ("loss", "recon_loss", "discriminator_loss"))
    pred = st.predict(x)
    assert pred["embedding"].shape == (5, d * L) and st.latent_dim == d * L
    assert pred["embedding_recurrent"].shape == (5, T, d * L) and pred["recon_x"].shape == x.shape


def test_last_hidden_is_repeated_per_subject_without_mixing() -> None:
    """Every decoder step of subject b sees subject b's last hidden state (both directions)."""
    torch.manual_seed(0)
    st = station().eval()
    seen = {}
    st.model.lstm_dec.register_forward_hook(lambda m, args, out: seen.update(seq=args[0]))
    x = torch.rand(3, T, 16, 16)
    pred = st.predict(x)
    seq = seen["seq"]  # (B, T, D·L)
    for b in range(3):
        for t in range(T):
            assert torch.equal(seq[b, t], pred["embedding"][b])


def test_one_step_changes_every_group_through_the_engine() -> None:
    torch.manual_seed(0)
    pythae = {"wrappers": {"lstm": {"im_encode_factor": 2}}}
    engine = make_engine("custom_factor_vae", pythae_wrapper_mode=1, pythae=pythae)
    batch = {"inp": {"data": torch.rand(4, T, 16, 16)}, "key": [f"p{i}/f/i/ds" for i in range(4)]}
    lstm_params = [p.detach().clone() for p in engine.net.model.lstm_emb.parameters()]
    assert all(changed_groups(engine, batch).values())
    assert any(not torch.equal(a, b) for a, b in zip(lstm_params, engine.net.model.lstm_emb.parameters(), strict=True))
    result = engine.eval().infer(batch)
    assert result.embedding.shape == (4, 2 * L) and result.recon.shape == (4, T, 16, 16)


def test_bad_settings_fail_clearly() -> None:
    with pytest.raises(ConfigError, match="wraps only factor_vae / custom_factor_vae, not vae"):
        PythaeStation.from_options("vae", (16, 16), 1, False, L, {"n_features": 4}, wrapper_mode=1)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'hidden'; valid: im_encode_factor"):
        station(hidden=3)
    with pytest.raises(ConfigError, match="im_encode_factor=0 must be a positive integer"):
        LSTMOptions.from_yaml({"im_encode_factor": 0})
    with pytest.raises(ConfigError, match="--pythae_wrapper_mode 2 is unknown"):
        PythaeStation.from_options("factor_vae", (16, 16), 1, False, L, {}, wrapper_mode=2)
    st = PythaeStation.from_options(
        "custom_factor_vae", (16, 16), 2, False, L, {"n_features": 4, "reconstruction_loss": "l1"}, wrapper_mode=1
    )
    with pytest.raises(ConfigError, match="3 channels, not a multiple of in_channels=2"):
        st(torch.rand(2, 3, 16, 16))
