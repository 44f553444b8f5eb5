"""ReconEngine with the pythae station (modelID 0): every registry model takes a real training step."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from Engineering.engines.recon import ReconEngine
from Engineering.errors import ConfigError
from Engineering.warp_drives.pythae.registry import available_models
from tests.warp_drives.test_pythae_station import FAST, SHAPES, B, L  # one definition of the tiny settings


def make_engine(name: str, dim: str = "2d", auto: bool = False, **hp: object) -> ReconEngine:
    pythae = {"n_features": 4, "nn": "convnet", "reconstruction_loss": "mse", "models": FAST}
    pythae.update(hp.pop("pythae", {}))  # type: ignore[arg-type]
    hparams = {
        "modelID": 0,
        "pythae_model": name,
        "input_shape": ",".join(map(str, SHAPES[dim])),
        "in_channels": 1,
        "is3D": int(dim == "3d"),
        "auto_optim": auto,
        "lr": 1e-3,
        "batch_size": B,
        "effective_batch_size": B,
        "grad_clip_algo": "norm",
        "grad_clip_val": 1.0,
        **hp,
    }
    config = {"model": {"latent_dim": L, "pythae": pythae}, "training": {"im_log_freq": -1}}
    return ReconEngine(hparams, config)


def make_batch(dim: str = "2d", n: int = B, **extra: object) -> dict:
    return {
        "inp": {"data": torch.rand(n, 1, *SHAPES[dim])},
        "key": [f"p{i}/20208/2/primary_0" for i in range(n)],
        "indices": [torch.zeros(n, dtype=torch.long)] * 3,
        **extra,
    }


def fit_one_step(engine: ReconEngine, batch: dict, **trainer_kw: object) -> pl.Trainer:
    trainer = pl.Trainer(
        fast_dev_run=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_kw,
    )
    loader = DataLoader([batch], batch_size=None)  # one ready-made batch, no collation
    trainer.fit(engine, train_dataloaders=loader, val_dataloaders=loader)
    return trainer


def changed_groups(engine: ReconEngine, batch: dict, **trainer_kw: object) -> dict[str, bool]:
    groups = engine.net.optimiser_groups()
    before = {g.name: [p.detach().clone() for p in engine.net.group_parameters(g)] for g in groups}
    fit_one_step(engine, batch, **trainer_kw)
    return {
        g.name: any(not torch.equal(a, b) for a, b in zip(before[g.name], engine.net.group_parameters(g), strict=True))
        for g in groups
    }


def custom_options(name: str) -> dict:
    """Extra hparams and batch keys some custom models need."""
    if "ultra" in name or "ivaes" in name:
        return {"hp": {"n_phenotypes": 3}, "batch": {"phenotypes": torch.randn(B, 3)}}
    if "complex" in name:
        return {"hp": {"pythae": {"nn": "cvconvnet", "reconstruction_loss": "crecon"}}, "batch": {}}
    return {"hp": {}, "batch": {}}


@pytest.mark.parametrize("name", available_models())
def test_manual_step_trains_every_group(name: str) -> None:
    torch.manual_seed(0)
    opts = custom_options(name)
    engine = make_engine(name, **opts["hp"])
    changed = changed_groups(engine, make_batch(**opts["batch"]))
    # coupled models may switch a group off for a step (VAEGAN equilibrium, RAE_L2); at least the first group moves
    assert next(iter(changed.values())), f"{name}: {changed}"
    if engine.net.trainer_mode in ("base", "adversarial"):
        assert all(changed.values()), f"{name}: {changed}"


@pytest.mark.parametrize("name", [n for n in available_models() if n not in ("aae", "vaegan", "rae_l2")])
def test_automatic_step_trains_single_optimiser_models(name: str) -> None:
    torch.manual_seed(0)
    opts = custom_options(name)
    engine = make_engine(name, auto=True, **opts["hp"]) if _single(name, opts) else None
    if engine is None:
        with pytest.raises(ConfigError, match="--no-auto_optim"):
            make_engine(name, auto=True, **opts["hp"])
        return
    changed = changed_groups(engine, make_batch(**opts["batch"]), gradient_clip_val=1.0)
    assert all(changed.values()), f"{name}: {changed}"


def _single(name: str, opts: dict) -> bool:
    return make_engine(name, **opts["hp"]).net.supports_automatic_optimisation


@pytest.mark.parametrize("name", ["vae", "factor_vae", "rhvae"])
def test_3d_manual_step(name: str) -> None:
    torch.manual_seed(0)
    engine = make_engine(name, "3d")
    assert all(changed_groups(engine, make_batch("3d")).values())


def test_accumulation_steps_once_per_group_and_at_the_end_of_the_epoch() -> None:
    """effective 2·batch over a 3-batch epoch: one step after batches 0+1, one for the partial group at the end."""
    torch.manual_seed(0)
    engine = make_engine("vae", effective_batch_size=2 * B)
    assert engine.accumulate_gradbatch == 2
    trainer = pl.Trainer(
        max_epochs=1,
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    batch = make_batch()
    trainer.fit(engine, train_dataloaders=DataLoader([batch, batch, batch], batch_size=None))
    assert trainer.global_step == 2


def test_logged_names_follow_the_original() -> None:
    torch.manual_seed(0)
    engine = make_engine("factor_vae")
    trainer = fit_one_step(engine, make_batch())
    names = set(trainer.callback_metrics)
    for key in ("train_loss", "train_recon_loss", "train_autoencoder_loss", "train_discriminator_loss"):
        assert f"{key}_step" in names or key in names, names
    assert {"val_loss", "val_ssim", "val_autoencoder_loss"} <= names


def test_infer_returns_mu_embedding_and_recon() -> None:
    torch.manual_seed(0)
    engine = make_engine("vae").eval()
    batch = make_batch()
    result = engine.infer(batch)
    assert result.embedding.shape == (B, L)
    assert result.recon.shape == batch["inp"]["data"].shape
    mu = engine.net.model.encoder(batch["inp"]["data"]).embedding
    assert torch.allclose(result.embedding, mu)


def test_configure_optimizers_one_per_group_and_schedulers() -> None:
    engine = make_engine("vaegan", lr_decay_type=1)
    configs = engine.configure_optimizers()
    assert len(configs) == 3 and all("lr_scheduler" in c for c in configs)
    engine = make_engine("vae", n_optimisers=0)
    assert isinstance(engine.configure_optimizers(), dict)


@pytest.mark.parametrize(
    ("hp", "message"),
    [
        (
            {"n_optimisers": 1},
            r"--n_optimisers 1 does not fit factor_vae, which needs 2 \(autoencoder, discriminator\)",
        ),
        ({"auto_optim": True}, "--auto_optim cannot train factor_vae: it needs 2 optimisers.*--no-auto_optim"),
        ({"lossID": -1}, r"--lossID -1 \(perceptual loss\) reaches a pythae model only as its reconstruction loss"),
        ({"lossID": 7}, "--lossID 7 is unknown; valid: -1 perceptual loss, -2 LPIPS, 0 L1, 1 MSE, 2 SmoothL1"),
        ({"modelID": 3}, r"--modelID 3 is unknown.*valid: -1 \(Identity\), 0 \(pythae\)"),
        ({"input_shape": "16,x"}, "--input_shape '16,x' must be comma-separated integers"),
        ({"pythae_wrapper_mode": 2}, r"--pythae_wrapper_mode 2 is unknown; valid: 0 \(none\), 1 \(LSTM\)"),
    ],
)
def test_bad_options_fail_clearly(hp: dict, message: str) -> None:
    auto = bool(hp.pop("auto_optim", False))
    with pytest.raises(ConfigError, match=message):
        engine = make_engine("factor_vae", auto=auto, **hp)
        engine.configure_optimizers()


def test_identity_model_still_trains() -> None:
    engine = make_engine("vae", modelID=-1, lossID=4)
    before = engine.net.scale.detach().clone()
    fit_one_step(engine, make_batch())
    assert not torch.equal(before, engine.net.scale)


def test_ultra_vae_phenotypes_reach_the_model_and_pheno_pred_is_written() -> None:
    torch.manual_seed(0)
    pythae = {"models": {"ultra_vae": {"learn_phenotypes": True}}, "reconstruction_loss": "l1"}
    engine = make_engine("custom_ultra_vae", n_phenotypes=3, pythae=pythae)
    trainer = fit_one_step(engine, make_batch(phenotypes=torch.randn(B, 3)))
    assert "val_pheno_loss" in trainer.callback_metrics
    result = engine.eval().infer(make_batch())
    assert result.extra["pheno_pred"].shape == (B, 3)


def test_factor_vae_scores_a_one_sample_validation_batch_as_a_pair() -> None:
    torch.manual_seed(0)
    engine = make_engine("factor_vae").eval()  # as in Lightning's validation loop
    loss = engine.validation_step(make_batch(n=1), 0)
    assert loss is not None and torch.isfinite(loss)
