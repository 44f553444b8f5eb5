"""Config resolution of the pythae station and the registry's name rules."""

from __future__ import annotations

import json

import pytest

from Engineering.errors import ConfigError
from Engineering.warp_drives.pythae.config import CONFIG_ROOT, resolve_config
from Engineering.warp_drives.pythae.registry import PYTHAE_MODELS, resolve_model
from Engineering.warp_drives.pythae.station import PythaeStation

SHAPE = (16, 16)


def resolve(name: str, latent: int | None = 8, pythae_config: str = "", **yaml_pythae: object):
    return resolve_config(resolve_model(name), SHAPE, 1, latent, {"n_features": 4, **yaml_pythae}, pythae_config)


def test_celeba_defaults_ship_for_the_models_that_had_them() -> None:
    with_file = {p.name.removesuffix("_config.json") for p in (CONFIG_ROOT / "originals" / "celeba").glob("*.json")}
    assert with_file == set(PYTHAE_MODELS) - {"iwae", "miwae", "piwae", "ciwae", "pvae"}
    for path in (CONFIG_ROOT / "originals" / "celeba").glob("*.json"):
        assert "name" in json.loads(path.read_text())


def test_default_file_values_and_latent_override() -> None:
    kept = resolve("factor_vae", latent=-1)
    assert kept.config.latent_dim == 64 and kept.config.gamma == 10.0 and kept.config_file is not None
    assert resolve("factor_vae", latent=None).latent_dim == 64
    over = resolve("factor_vae", latent=8)
    assert over.latent_dim == 8 and over.config.latent_dim == 8
    assert resolve("svae", latent=0).latent_dim == 32
    assert resolve("iwae", latent=0).config_file is None and resolve("iwae", latent=0).latent_dim == 10


def test_input_dim_has_channel_axis() -> None:
    """pythae sees (C, *spatial)."""
    r = resolve_config(resolve_model("vamp"), (16, 16, 16), 2, 8, {}, "")
    assert r.config.input_dim == (2, 16, 16, 16) and r.spatial_shape == (16, 16, 16) and r.dims == 3
    assert r.n_features == 64 and r.nn == "convnet"  # station defaults (convnet)


def test_per_model_and_top_level_overrides() -> None:
    r = resolve("factor_vae", models={"factor_vae": {"gamma": 0.5}, "vae": {"nonsense": 1}})
    assert r.config.gamma == 0.5 and r.overrides == {"gamma": 0.5}
    r = resolve("factor_vae", gamma=3.0, models={"factor_vae": {"gamma": 0.5}})
    assert r.config.gamma == 3.0  # top level wins, as in the original


def test_unknown_per_model_key_names_valid_keys() -> None:
    with pytest.raises(ConfigError) as err:
        resolve("factor_vae", models={"factor_vae": {"gama": 0.5}})
    msg = str(err.value)
    assert "model.pythae.models.factor_vae: 'gama' is not a setting of this model" in msg
    assert "valid keys: latent_dim, reconstruction_loss, gamma" in msg


def test_unknown_top_level_key_and_protected_field() -> None:
    with pytest.raises(
        ConfigError, match="model.pythae: unknown key\\(s\\) 'gama' for factor_vae; valid keys: n_features"
    ):
        resolve("factor_vae", gama=1)
    with pytest.raises(ConfigError, match="'input_dim' is not a setting of this model"):
        resolve("vae", models={"vae": {"input_dim": [1, 2]}})


def test_values_are_validated() -> None:
    with pytest.raises(ConfigError, match="vae config is invalid"):
        resolve("vae", models={"vae": {"latent_dim": "many"}})
    with pytest.raises(ConfigError, match="vaegan rejected its config"):
        PythaeStation.from_options(
            "vaegan", SHAPE, 1, False, 8, {"n_features": 4, "models": {"vaegan": {"reconstruction_layer": 9}}}
        )
    with pytest.raises(ConfigError, match="model.latent_dim=2.5 must be a positive integer"):
        resolve("vae", latent=2.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["factor_vae", "vae", "rhvae", "aae"])
def test_l1_falls_back_to_mse_on_pythae_models(name: str, caplog: pytest.LogCaptureFixture) -> None:
    """The YAML's l1 trains built-in models with mse and says so (the original crashed)."""
    with caplog.at_level("WARNING", logger="imlatent.pythae"):
        r = resolve(name, reconstruction_loss="l1")
    assert r.reconstruction_loss == "mse" and r.config.reconstruction_loss == "mse"
    assert f"'l1' (the YAML's) is not supported by {name}; using 'mse'" in caplog.text


@pytest.mark.parametrize("name", ["factor_vae", "vae"])
def test_other_unsupported_losses_are_refused(name: str) -> None:
    with pytest.raises(
        ConfigError, match=f"reconstruction_loss='ssim' is not supported by {name}; valid values: mse, bce"
    ):
        resolve(name, reconstruction_loss="ssim")


@pytest.mark.parametrize("name", ["ae", "wae", "rae_gp", "rae_l2", "vqvae", "vaegan", "msssim_vae"])
def test_models_with_own_loss_ignore_the_setting(name: str) -> None:
    """These models no longer crash on the YAML's reconstruction_loss."""
    assert resolve(name, reconstruction_loss="l1").reconstruction_loss is None


def test_reconstruction_loss_precedence() -> None:
    assert resolve("vae", models={"vae": {"reconstruction_loss": "bce"}}).config.reconstruction_loss == "bce"
    r = resolve("vae", reconstruction_loss="mse", models={"vae": {"reconstruction_loss": "bce"}})
    assert r.config.reconstruction_loss == "mse"


def test_pythae_config_path() -> None:
    """The repo's gamma JSONs load (leniently); built-in factor_vae then trains their l1 as mse."""
    assert resolve("factor_vae", pythae_config="factor_vae_config_gammaHalf.json").reconstruction_loss == "mse"
    r = resolve("factor_vae", -1, "factor_vae_config_gammaQuarter.json", reconstruction_loss="mse")
    assert r.config.gamma == 0.25 and r.latent_dim == 128
    with pytest.raises(ConfigError, match="--pythae_config 'nope.json': no such file"):
        resolve("vae", pythae_config="nope.json")


def test_model_names() -> None:
    with pytest.raises(
        ConfigError, match="--pythae_model 'vea' is not a built-in pythae model here; valid names: ae, vae"
    ):
        resolve_model("vea")
    with pytest.raises(ConfigError, match="'custom_vae' is not a custom model"):
        resolve_model("custom_vae")
    assert resolve_model("vqvae").key == "vqvae"  # no longer blocked


def test_station_shape_checks() -> None:
    with pytest.raises(ConfigError, match="input_shape \\(16, 16\\) has 2 spatial axes but is3D=True needs 3"):
        PythaeStation.from_options("vae", SHAPE, 1, True, 8, {})
    with pytest.raises(ConfigError, match="axis 0 has size 4"):
        PythaeStation.from_options("vae", (4, 16, 16), 1, True, 8, {"n_features": 4})
    with pytest.raises(ConfigError, match="in_channels=0 must be a positive integer"):
        PythaeStation.from_options("vae", SHAPE, 0, False, 8, {})
