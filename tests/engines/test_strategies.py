"""Strategy objects, run-setting checks, SLURM plugin choice, precision and compilation."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest
import torch
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy

from Engineering.configuration.run_config import RunConfig
from Engineering.engines.strategies import (
    DEEPSPEED_PRESETS,
    STRATEGIES,
    check_run_settings,
    choose_strategy,
    cluster_plugins,
    compile_network,
    global_rank,
)
from Engineering.engines.trainer_setup import precision_of, trainer_kwargs
from Engineering.errors import ConfigError


def _hp(**kw) -> RunConfig:
    base = dict(
        accelerator="gpu",
        ndevices=4,
        nnodes=2,
        ampmode="16-mixed",
        num_epochs=1,
        n_train_batches=1.0,
        n_val_batches=1.0,
        auto_optim=True,
        effective_batch_size=2,
        batch_size=2,
        grad_clip_val=0,
        grad_clip_algo="",
    )
    base.update(kw)
    script = {0: "recon", 1: "diffae", 2: "latentcls"}[base.get("taskID", 0)]
    return RunConfig.build(script, base, {"model": {"latent_dim": 8}})


SRUN = {
    "SLURM_JOB_ID": "42",
    "SLURM_NTASKS": "8",
    "SLURM_NTASKS_PER_NODE": "4",
    "SLURM_NNODES": "2",
    "SLURM_JOB_NAME": "imlatent",
    "SLURM_PROCID": "5",
}


# ---------------------------------------------------------------------------------------------- strategy objects
@pytest.mark.parametrize(("name", "task", "unused"), [("ddp", 0, True), ("ddp", 1, False), ("ddp_spawn", 0, True)])
def test_ddp_names_build_configured_ddp_strategies(name, task, unused):
    strategy = choose_strategy(name, task).build()
    assert type(strategy) is DDPStrategy
    assert strategy._ddp_kwargs == {"find_unused_parameters": unused}
    assert strategy._start_method == ("spawn" if name == "ddp_spawn" else "popen")


def test_fsdp_and_default():
    assert type(choose_strategy("fsdp").build()) is FSDPStrategy
    assert choose_strategy("default").build() is None and choose_strategy("  ").build() is None


@pytest.mark.parametrize("name", sorted(DEEPSPEED_PRESETS))
def test_deepspeed_presets_match_lightnings_registered_settings(name):
    from lightning.pytorch.strategies import StrategyRegistry

    choice = choose_strategy(name)
    assert choice.cls is DeepSpeedStrategy and choice.settings == StrategyRegistry[name]["init_params"]
    zero = choice.build().config["zero_optimization"]
    assert zero["stage"] == choice.settings.get("stage", 2)
    assert zero["allgather_bucket_size"] == zero["reduce_bucket_size"] == 200_000_000
    assert ("offload_optimizer" in zero) == name.endswith("offload")
    assert ("offload_param" in zero) == (name == "deepspeed_stage_3_offload")


def test_every_documented_name_is_mapped_and_lightning_names_pass_through():
    assert {choose_strategy(n).name for n in STRATEGIES} == set(STRATEGIES)
    assert choose_strategy("ddp_find_unused_parameters_true").build() == "ddp_find_unused_parameters_true"


def test_unknown_strategy_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"--training_strategy 'dpp' is unknown; valid: default, ddp, fsdp.*ddp_fork"):
        choose_strategy("dpp")


def test_trainer_kwargs_carry_the_strategy_object():
    kw = trainer_kwargs(_hp(accelerator="cpu", training_strategy="ddp", taskID=1), [], [], validate=True)
    assert type(kw["strategy"]) is DDPStrategy and kw["strategy"]._ddp_kwargs == {"find_unused_parameters": False}
    assert "strategy" not in trainer_kwargs(_hp(accelerator="cpu"), [], [], validate=True)


# ---------------------------------------------------------------------------------------------- impossible combinations
@pytest.mark.parametrize("name", ["fsdp", "deepspeed_stage_2", "fsdp_cpu_offload"])
def test_sharded_strategies_need_cuda(name):
    with pytest.raises(
        ConfigError, match=f"--training_strategy {name} needs GPUs \\(CUDA\\); it cannot run with --accelerator cpu"
    ):
        check_run_settings(_hp(accelerator="cpu", training_strategy=name), cuda=False, environ={})
    with pytest.raises(ConfigError, match=f"{name} needs GPUs \\(CUDA\\), and this machine has none visible"):
        check_run_settings(_hp(training_strategy=name), cuda=False, environ={})


def test_deepspeed_offload_needs_deepspeed_cpu_adam():
    with pytest.raises(
        ConfigError, match="deepspeed_stage_2_offload offloads the optimiser .* needs --optimiserID 100"
    ):
        check_run_settings(_hp(training_strategy="deepspeed_stage_2_offload"), cuda=True, environ={})
    with pytest.raises(ConfigError, match="DiffAE always trains with torch Adam, so use deepspeed_stage_2"):
        check_run_settings(_hp(training_strategy="deepspeed_stage_3_offload", taskID=1), cuda=True, environ={})
    ok = check_run_settings(_hp(training_strategy="deepspeed_stage_3_offload", optimiserID=100), cuda=True, environ={})
    assert ok.offloads_optimiser


def test_deepspeed_cpu_adam_without_offload_is_refused():
    with pytest.raises(
        ConfigError, match="--optimiserID 100 .* use it with deepspeed_stage_2_offload .* not deepspeed_stage_2"
    ):
        check_run_settings(_hp(training_strategy="deepspeed_stage_2", optimiserID=100), cuda=True, environ={})
    with pytest.raises(
        ConfigError, match="--optimiserID 100 \\(DeepSpeedCPUAdam\\) needs a DeepSpeed offload strategy"
    ):
        check_run_settings(_hp(training_strategy="ddp", optimiserID="100"), cuda=True, environ={})


def test_fused_adam_needs_cuda():
    with pytest.raises(ConfigError, match="--optimiserID 200 \\(FusedAdam\\) needs CUDA GPUs; use 0 \\(Adam\\) on CPU"):
        check_run_settings(_hp(accelerator="cpu", optimiserID=200), cuda=False, environ={})
    check_run_settings(_hp(training_strategy="deepspeed_stage_3", optimiserID=200), cuda=True, environ={})


# ---------------------------------------------------------------------------------------------- precision
@pytest.mark.parametrize(
    ("ampmode", "expected"),
    [("32", 32), ("32-true", "32-true"), ("16-mixed", "16-mixed"), ("bf16-mixed", "bf16-mixed")],
)
def test_ampmode_maps_to_lightning_precision(ampmode, expected):
    assert precision_of(ampmode) == expected
    check_run_settings(_hp(accelerator="cpu", ampmode=ampmode), cuda=False, environ={})


def test_unknown_or_gpu_only_precision_is_refused():
    with pytest.raises(ConfigError, match="--ampmode 'fp16' is unknown; valid: 32, 32-true, 16, 16-mixed"):
        check_run_settings(_hp(ampmode="fp16"), cuda=True, environ={})
    with pytest.raises(ConfigError, match="--ampmode 16-true needs a GPU; on CPU use 32, bf16-mixed or bf16-true"):
        check_run_settings(_hp(accelerator="cpu", ampmode="16-true"), cuda=False, environ={})


def test_fp16_amp_on_cpu_warns_of_lightnings_bf16_fallback(caplog):
    check_run_settings(_hp(accelerator="cpu", ampmode="16-mixed"), cuda=False, environ={})
    assert "fp16 AMP needs a GPU, Lightning runs bf16-mixed instead" in caplog.text


# ---------------------------------------------------------------------------------------------- SLURM
def test_slurm_plugin_under_srun_with_auto_requeue():
    (plugin,) = cluster_plugins(SRUN)
    assert isinstance(plugin, SLURMEnvironment) and plugin.auto_requeue
    single_task_batch = {"SLURM_JOB_ID": "42", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train.sbatch"}
    assert isinstance(cluster_plugins(single_task_batch)[0], SLURMEnvironment)


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"SLURM_JOB_ID": "42", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "bash"},
        {"SLURM_JOB_ID": "7", "SLURM_JOB_NAME": "interactive"},
    ],
)
def test_no_slurm_plugin_outside_srun(env):
    assert cluster_plugins(env) == []


def test_trainer_kwargs_pick_the_slurm_plugin_from_the_environment(monkeypatch):
    for key, value in SRUN.items():
        monkeypatch.setenv(key, value)
    kw = trainer_kwargs(_hp(accelerator="cpu"), [], [], validate=True)
    assert isinstance(kw["plugins"][0], SLURMEnvironment)
    monkeypatch.delenv("SLURM_JOB_ID")
    assert "plugins" not in trainer_kwargs(_hp(accelerator="cpu"), [], [], validate=True)


def test_slurm_layout_must_match_devices_and_nodes():
    env = SRUN
    check_run_settings(_hp(), cuda=True, environ=env)
    with pytest.raises(
        ConfigError, match="SLURM runs 4 tasks per node but --ndevices is 2; set #SBATCH --ntasks-per-node=2"
    ):
        check_run_settings(_hp(ndevices=2), cuda=True, environ=env)
    with pytest.raises(ConfigError, match="SLURM allocated 2 nodes but --nnodes is 1; set --nnodes 2"):
        check_run_settings(_hp(nnodes=1), cuda=True, environ=env)


@pytest.mark.parametrize(
    ("env", "rank"),
    [({}, 0), (SRUN, 5), ({"LOCAL_RANK": "1", "NODE_RANK": "1"}, 5), ({"RANK": "3", "LOCAL_RANK": "1"}, 3)],
)
def test_global_rank_before_the_trainer(env, rank):
    assert global_rank(env, devices_per_node=4) == rank


# ---------------------------------------------------------------------------------------------- compilation
def test_compiled_network_keeps_state_dict_keys(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compiled.append(fn) or fn)  # real compile: seconds on CPU
    engine = torch.nn.Module()
    engine.net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.GroupNorm(1, 2))
    before = list(engine.state_dict())
    compile_network(engine)
    assert compiled == [engine.net._call_impl]  # the network, in place; never the LightningModule
    assert list(engine.state_dict()) == before and not any("_orig_mod" in k for k in before)
    engine.load_state_dict(engine.state_dict(), strict=True)
    engine.ema_net = torch.nn.Linear(2, 2)  # an engine with an EMA network: the test stage runs that one
    engine.ema_net.encoder = torch.nn.Linear(2, 2)  # and calls its encoder directly for latents
    compile_network(engine)
    assert compiled[-2:] == [engine.ema_net._call_impl, engine.ema_net.encoder._call_impl]


# ---------------------------------------------------------------------------------------------- bf16 on CPU
@pytest.mark.slow
def test_bf16_mixed_runs_end_to_end_on_cpu(tmp_path, monkeypatch, repo_root):
    from Engineering.data.demo import write_demo_dataset
    from Engineering.engines.runner import main

    write_demo_dataset(tmp_path / "demo_data", n_patients=6, frames=6, size=32, n_folds=2, seed=3)
    monkeypatch.chdir(repo_root)
    args = [
        "--datajson_path",
        "Configs/demo/dataNpath_demo.json",
        f"--json§datadir={tmp_path / 'demo_data'}",
        f"--json§save_path={tmp_path / 'res'}",
        f"--json§tblog_path={tmp_path / 'tb'}",
        "--json§DS_sanity_filters§dim1=6",
        "--accelerator",
        "cpu",
        "--num_workers",
        "0",
        "--ampmode",
        "bf16-mixed",
        "--input_shape",
        "6,32,32",
        "--batch_size",
        "2",
        "--n_train_batches",
        "1.0",
        "--n_val_batches",
        "1.0",
        "--modelID",
        "-1",
        "--num_epochs",
        "1",
    ]
    assert main("recon", args) == 0
    (run_dir,) = (tmp_path / "res").iterdir()
    assert run_dir.name.endswith("_precbf16-mixed_pythaemodel-factor_vae")
    assert (run_dir / "Checkpoints" / "last.ckpt").is_file()
    with h5py.File(Path(run_dir) / "Output" / "emb.h5", "r") as f:
        assert len(f) > 0
