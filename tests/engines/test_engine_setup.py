"""Trainer construction, optimiser and LR-decay choices."""

from __future__ import annotations

import pytest
import torch

from Engineering.configuration.run_config import RunConfig
from Engineering.configuration.sections import LRDecay
from Engineering.engines.base import build_lr_scheduler, build_optimiser
from Engineering.engines.trainer_setup import batch_limit, check_strategy, precision_of, trainer_kwargs
from Engineering.errors import ConfigError


def _cfg(yaml: dict | None = None, **kw) -> RunConfig:
    base = dict(
        accelerator="cpu",
        num_epochs=3,
        n_train_batches=0.25,
        n_val_batches=4.0,
        auto_optim=True,
        effective_batch_size=96,
        batch_size=32,
    )
    return RunConfig.build("recon", {**base, **kw}, yaml or {})


@pytest.mark.parametrize(
    ("ampmode", "expected"), [("32", 32), ("16", 16), ("16-mixed", "16-mixed"), ("bf16-mixed", "bf16-mixed")]
)
def test_precision_parses_ints_and_passes_strings(ampmode, expected):
    assert precision_of(ampmode) == expected


@pytest.mark.parametrize(("value", "expected"), [(0.25, 0.25), (1.0, 1.0), (4.0, 4), (1.5, 1)])
def test_batch_limit_fraction_or_count(value, expected):
    out = batch_limit(value)
    assert out == expected and type(out) is type(expected)


def test_trainer_kwargs_accumulation_and_clipping():
    kw = trainer_kwargs(_cfg({"training": {"log_freq": 7}}), [], [], validate=True)
    assert kw["accumulate_grad_batches"] == 3
    assert kw["gradient_clip_val"] == 1.0 and kw["gradient_clip_algorithm"] == "norm"
    assert kw["devices"] == 1 and kw["log_every_n_steps"] == 7 and kw["limit_val_batches"] == 4


def test_trainer_kwargs_manual_optimisation_leaves_clipping_to_the_model():
    kw = trainer_kwargs(_cfg(auto_optim=False, run_mode=3), [], [], validate=False)
    assert "gradient_clip_val" not in kw and "accumulate_grad_batches" not in kw
    assert kw["limit_val_batches"] == 0 and kw["num_sanity_val_steps"] == 0


def test_negative_dev_run_is_barebones_without_loggers():
    kw = trainer_kwargs(_cfg(dev_run=-2), ["logger"], ["cb"], validate=True)
    assert kw["barebones"] is True and kw["logger"] is False and kw["callbacks"] == []
    assert "fast_dev_run" not in kw and kw["limit_train_batches"] == 2


def test_deepspeed_on_cpu_is_a_clear_error():
    with pytest.raises(ConfigError, match="deepspeed_stage_2 needs GPUs"):
        check_strategy(_cfg(training_strategy="deepspeed_stage_2"))
    assert check_strategy(_cfg(training_strategy="default")) is None


def test_optimiser_ids_and_names():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(build_optimiser(0, params, 1e-3), torch.optim.Adam)
    assert isinstance(build_optimiser("1", params, 1e-3), torch.optim.AdamW)
    assert isinstance(build_optimiser("SGD", params, 1e-3), torch.optim.SGD)
    with pytest.raises(ConfigError, match="--optimiserID 7 is unknown"):
        build_optimiser(7, params, 1e-3)
    with pytest.raises(ConfigError, match="MTAdam.*Lightning's optimiser step never passes"):
        build_optimiser(4, params, 1e-3)


def test_lr_decay_types_build_the_configured_schedulers():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cfg = LRDecay(type1={"decay_nepoch": 25, "decay_rate": 0.15}, type2={"decay_rate": 0.5, "patience": 3})
    assert build_lr_scheduler(0, cfg, opt) is None
    step = build_lr_scheduler(1, cfg, opt)["scheduler"]
    assert isinstance(step, torch.optim.lr_scheduler.StepLR) and step.step_size == 25 and step.gamma == 0.15
    plateau = build_lr_scheduler(2, cfg, opt)
    assert (
        plateau["monitor"] == "val_loss" and plateau["scheduler"].factor == 0.5 and plateau["scheduler"].patience == 3
    )
    with pytest.raises(ConfigError, match="--lr_decay_type 5 is unknown"):
        build_lr_scheduler(5, cfg, opt)


@pytest.mark.parametrize("as_list", [False, True], ids=["one-scheduler", "one-per-optimiser"])
def test_manual_optimisation_steps_every_scheduler_once_per_epoch(as_list):
    from types import SimpleNamespace

    from Engineering.engines.recon import ReconEngine

    engine = ReconEngine({"modelID": -1, "auto_optim": False}, {})
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    step = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(torch.optim.SGD([torch.zeros(1)], lr=1.0), patience=0)
    engine.lr_schedulers = lambda: [step, plateau] if as_list else step
    engine._trainer = SimpleNamespace(callback_metrics={"val_loss": torch.tensor(2.0)})
    engine.on_train_epoch_end()
    engine.on_train_epoch_end()
    assert step.last_epoch == 2 and opt.param_groups[0]["lr"] == 0.25
    assert plateau.best == (2.0 if as_list else float("inf"))  # stepped with val_loss only when it is scheduled


def test_options_that_cannot_work_in_the_run_mode_are_errors():
    from Engineering.engines.run_plan import plan_of
    from Engineering.engines.runner import _check_run_mode_options

    def check(**kw) -> None:
        cfg = _cfg(**{"tbactive": False, **kw})
        _check_run_mode_options(cfg, plan_of(cfg.run.run_mode))

    with pytest.raises(ConfigError, match="--lr_decay_type 2 .* run_mode 3 does not compute"):
        check(lr_decay_type=2, run_mode=3)
    with pytest.raises(ConfigError, match="--early_stopping_patience 2 monitors val_loss, which run_mode 0"):
        check(early_stopping_patience=2, run_mode=0)
    with pytest.raises(
        ConfigError, match="--load_model_4test tests another run's checkpoint: use it with --run_mode 2"
    ):
        check(load_model_4test="/runs/other")
    with pytest.raises(ConfigError, match="no 'tblog_path'"):
        check(tbactive=True)
    check(load_model_4test="/runs/other", run_mode=2)


def test_preweights_accept_a_bare_network_state_dict_and_a_pipeline_checkpoint(tmp_path):
    from Engineering.engines.recon import ReconEngine
    from Engineering.hub import load_pretrained_weights

    source = ReconEngine({"modelID": -1}, {})
    with torch.no_grad():
        source.net.scale.fill_(3.0)
    torch.save(source.net.state_dict(), tmp_path / "net.pt")
    torch.save({"state_dict": source.state_dict()}, tmp_path / "run.ckpt")
    for name in ("net.pt", "run.ckpt"):
        target = ReconEngine({"modelID": -1}, {})
        load_pretrained_weights(target, tmp_path / name)
        assert float(target.net.scale) == 3.0


@pytest.mark.parametrize(("is3d", "shape"), [(1, (2, 32, 32)), (0, (32, 32))], ids=["3d", "2d"])
def test_diffae_engine_infer_shapes_range_and_embedding_only(is3d, shape):
    from Engineering.engines.runner import build_engine

    hp = {"is3D": is3d, "input_shape": ",".join(map(str, shape)), "ampmode": "32"}
    config = {"model": {"latent_dim": 8, "DiffAE": {"net_ch": 8, "T_eval": 2}}}
    engine = build_engine(RunConfig.build("diffae", hp, config)).eval()
    x = torch.rand(2, 1, *shape) * 2 - 1
    with torch.no_grad():
        full = engine.infer({"inp": {"data": x}})
        engine.use_config(engine.cfg.updated(test_emb_only=True))
        latent_only = engine.infer({"inp": {"data": x}})
    assert full.embedding.shape == (2, 8) and full.recon.shape == x.shape
    assert full.recon.min() >= 0 and full.recon.max() <= 1
    assert latent_only.recon is None and torch.equal(latent_only.embedding, full.embedding)


def test_deterministic_mode_keeps_kernels_deterministic_without_filling_memory():
    import torch.utils.deterministic

    from Engineering.engines.trainer_setup import deterministic_algorithms

    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    fill = torch.utils.deterministic.fill_uninitialized_memory
    try:
        deterministic_algorithms()
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
        assert not torch.empty(1000).isnan().all()  # filling would have made every element NaN
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.utils.deterministic.fill_uninitialized_memory = fill


@pytest.mark.parametrize("non_deter", [False, True])
def test_cudnn_autotuning_only_when_non_deterministic(non_deter):
    kw = trainer_kwargs(_cfg(non_deter=non_deter), [], [], validate=True)
    assert kw["deterministic"] is not non_deter and kw["benchmark"] is non_deter


def test_wnbprefix_names_the_wandb_run_and_keeps_its_id():
    from Engineering.engines.trainer_setup import wandb_run_name

    assert wandb_run_name("exp1", "demo_fold0_prec32_DiffAE") == "exp1_demo_fold0_prec32_DiffAE"
    assert wandb_run_name("exp1_", "r") == "exp1_r"
    assert wandb_run_name("", "r") == "r"


def test_use_concurrent_dataloader_is_refused_in_one_line():
    from Engineering.engines.run_plan import plan_of
    from Engineering.engines.runner import _check_run_mode_options

    _check_run_mode_options(_cfg(tbactive=False), plan_of(4))
    with pytest.raises(ConfigError, match="--use_concurrent_dataloader is not supported"):
        _check_run_mode_options(_cfg(tbactive=False, use_concurrent_dataloader=True), plan_of(4))
