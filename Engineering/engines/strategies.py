"""Distributed strategies, precision checks and cluster plugins.

``--training_strategy`` names become configured Lightning strategy objects; impossible combinations of
strategy, accelerator, precision and optimiser are refused with a one-line :class:`ConfigError` right after
the configuration is resolved, before any data is read. Under ``srun`` Lightning's :class:`SLURMEnvironment`
is used with auto-requeue on SIGUSR1.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from Engineering.configuration.run_config import RunConfig
from Engineering.configuration.sections import RunControl
from Engineering.errors import ConfigError

log = logging.getLogger("imlatent")

#: DeepSpeed presets, exactly the settings Lightning registers under these names (bucket sizes: Lightning's 2e8)
DEEPSPEED_PRESETS: dict[str, dict[str, Any]] = {
    "deepspeed": {},
    "deepspeed_stage_1": {"stage": 1},
    "deepspeed_stage_2": {"stage": 2},
    "deepspeed_stage_2_offload": {"stage": 2, "offload_optimizer": True},
    "deepspeed_stage_3": {"stage": 3},
    "deepspeed_stage_3_offload": {"stage": 3, "offload_optimizer": True, "offload_parameters": True},
}

#: documented --training_strategy names (constants.STRATEGIES of the original); other Lightning names pass through
STRATEGIES = ("default", "ddp", "fsdp", "ddp_spawn", *DEEPSPEED_PRESETS)

#: --ampmode values Lightning accepts (ints are parsed first)
PRECISIONS = (
    "32",
    "32-true",
    "16",
    "16-mixed",
    "16-true",
    "bf16",
    "bf16-mixed",
    "bf16-true",
    "64",
    "64-true",
    "transformer-engine",
    "transformer-engine-float16",
)

#: optimiser ids that only work with CUDA or DeepSpeed offload
CPU_ADAM, FUSED_ADAM = 100, 200
DIFFAE_TASK = 1
GPU_ACCELERATORS = ("gpu", "cuda", "auto")


@dataclass(frozen=True)
class StrategyChoice:
    """A resolved ``--training_strategy``: the Lightning class (or a registered name) and its settings."""

    name: str
    cls: type | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_cuda(self) -> bool:
        return self.name.startswith(("deepspeed", "fsdp"))

    @property
    def offloads_optimiser(self) -> bool:
        return bool(self.settings.get("offload_optimizer"))

    def build(self) -> Any:
        """The Lightning strategy object (or the registered name for plain Lightning strings); None = Lightning's default."""
        if self.name == "default":
            return None
        if self.cls is None:
            return self.name
        return self.cls(**self.settings)


def lightning_strategy_names() -> list[str]:
    """Every strategy name registered with Lightning (plus "auto")."""
    from lightning.pytorch.strategies import StrategyRegistry

    return ["auto", *StrategyRegistry.available_strategies()]


def choose_strategy(name: str | None, task_id: int = 0) -> StrategyChoice:
    """Map a ``--training_strategy`` name to its Lightning class and settings.

    DDP sets ``find_unused_parameters`` for the pythae models (taskID 0/2), whose heads or discriminators can
    leave parameters without a gradient in a step; DiffAE's training step uses every parameter of ``net``.
    """
    from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy

    name = (name or "").strip() or "default"
    if name == "default":
        return StrategyChoice("default")
    if name in ("ddp", "ddp_spawn"):
        settings: dict[str, Any] = {"find_unused_parameters": task_id != DIFFAE_TASK}
        if name == "ddp_spawn":
            settings["start_method"] = "spawn"
        return StrategyChoice(name, DDPStrategy, settings)
    if name == "fsdp":
        return StrategyChoice(name, FSDPStrategy, {})
    if name in DEEPSPEED_PRESETS:
        return StrategyChoice(name, DeepSpeedStrategy, dict(DEEPSPEED_PRESETS[name]))
    if name in lightning_strategy_names():
        return StrategyChoice(name)
    raise ConfigError(
        f"--training_strategy {name!r} is unknown; valid: {', '.join(STRATEGIES)}, "
        f"or a Lightning strategy ({', '.join(n for n in lightning_strategy_names() if n not in STRATEGIES)})"
    )


def check_precision(ampmode: str, accelerator: str, cuda: bool) -> None:
    """Refuse unknown ``--ampmode`` values; warn that fp16 AMP on CPU runs as bf16-mixed (Lightning's fallback)."""
    if str(ampmode) not in PRECISIONS:
        raise ConfigError(f"--ampmode {ampmode!r} is unknown; valid: {', '.join(PRECISIONS)}")
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not cuda)
    if on_cpu and str(ampmode) in ("16", "16-mixed"):
        log.warning("--ampmode %s on CPU: fp16 AMP needs a GPU, Lightning runs bf16-mixed instead", ampmode)
    if on_cpu and str(ampmode) in ("16-true", "transformer-engine", "transformer-engine-float16"):
        raise ConfigError(f"--ampmode {ampmode} needs a GPU; on CPU use 32, bf16-mixed or bf16-true")


def check_run_settings(
    cfg: RunConfig, cuda: bool | None = None, environ: Mapping[str, str] | None = None
) -> StrategyChoice:
    """Validate strategy, accelerator, precision, optimiser and SLURM layout together; return the strategy choice.

    Called right after configuration resolution, so impossible combinations fail before any data is read.
    """
    from Engineering.engines.base import check_optimiser

    run = cfg.run
    cuda = torch.cuda.is_available() if cuda is None else cuda
    accelerator = (run.accelerator or "auto").lower()
    task_id = run.taskID
    optimiser_id = cfg.training.optimiserID
    choice = choose_strategy(run.training_strategy, task_id)
    check_precision(run.ampmode, accelerator, cuda)
    if task_id != DIFFAE_TASK:  # DiffAE always trains with Adam and ignores --optimiserID
        check_optimiser(optimiser_id)
    if choice.needs_cuda:
        if accelerator not in GPU_ACCELERATORS:
            raise ConfigError(
                f"--training_strategy {choice.name} needs GPUs (CUDA); it cannot run with --accelerator {accelerator}"
            )
        if not cuda:
            raise ConfigError(f"--training_strategy {choice.name} needs GPUs (CUDA), and this machine has none visible")
    if choice.name.startswith("deepspeed"):
        _check_deepspeed(choice, task_id, optimiser_id)
    elif _optimiser_id(optimiser_id) == CPU_ADAM and task_id != DIFFAE_TASK:
        raise ConfigError(
            "--optimiserID 100 (DeepSpeedCPUAdam) needs a DeepSpeed offload strategy: "
            "--training_strategy deepspeed_stage_2_offload or deepspeed_stage_3_offload"
        )
    if _optimiser_id(optimiser_id) == FUSED_ADAM and task_id != DIFFAE_TASK:
        if accelerator not in GPU_ACCELERATORS or not cuda:
            raise ConfigError("--optimiserID 200 (FusedAdam) needs CUDA GPUs; use 0 (Adam) on CPU")
    check_slurm_layout(run, os.environ if environ is None else environ)
    return choice


def _check_deepspeed(choice: StrategyChoice, task_id: int, optimiser_id: Any) -> None:
    try:
        import deepspeed  # noqa: F401
    except ImportError as err:
        raise ConfigError(
            f"--training_strategy {choice.name} needs the deepspeed package: pip install deepspeed"
        ) from err
    optimiser = _optimiser_id(optimiser_id)
    if choice.offloads_optimiser:
        if task_id == DIFFAE_TASK:
            raise ConfigError(
                f"--training_strategy {choice.name} offloads the optimiser, which needs DeepSpeedCPUAdam; DiffAE always "
                "trains with torch Adam, so use deepspeed_stage_2 or deepspeed_stage_3"
            )
        if optimiser != CPU_ADAM:
            raise ConfigError(
                f"--training_strategy {choice.name} offloads the optimiser to the CPU and needs --optimiserID 100 "
                f"(DeepSpeedCPUAdam); got {optimiser_id}"
            )
    elif optimiser == CPU_ADAM and task_id != DIFFAE_TASK:
        raise ConfigError(
            f"--optimiserID 100 (DeepSpeedCPUAdam) keeps the optimiser on the CPU; use it with "
            f"deepspeed_stage_2_offload or deepspeed_stage_3_offload, not {choice.name}"
        )


def _optimiser_id(value: Any) -> int | None:
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else None


# ---------------------------------------------------------------------------------------------------- SLURM
def under_srun(environ: Mapping[str, str]) -> bool:
    """True inside a SLURM job launched by ``srun`` (not an interactive ``salloc``/``srun --pty bash`` shell)."""
    if "SLURM_JOB_ID" not in environ:
        return False
    ntasks = _int(environ.get("SLURM_NTASKS"), 1)
    return ntasks > 1 or environ.get("SLURM_JOB_NAME", "") not in ("bash", "interactive")


def cluster_plugins(environ: Mapping[str, str] | None = None) -> list[Any]:
    """``[SLURMEnvironment(auto_requeue=True)]`` under srun (requeue on SIGUSR1), else no cluster plugin."""
    env = os.environ if environ is None else environ
    if not under_srun(env):
        return []
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=True)]


def check_slurm_layout(run: RunControl, environ: Mapping[str, str]) -> None:
    """Under srun, one task per device: --ntasks-per-node must equal --ndevices and the node count --nnodes."""
    if not under_srun(environ) or run.accelerator.lower() == "cpu":
        return
    devices = run.ndevices or 1
    nodes = run.nnodes
    per_node = _int(environ.get("SLURM_NTASKS_PER_NODE", "").split("(")[0], 0)
    if per_node and per_node != devices:
        raise ConfigError(
            f"SLURM runs {per_node} tasks per node but --ndevices is {devices}; set #SBATCH --ntasks-per-node={devices}"
        )
    job_nodes = _int(environ.get("SLURM_NNODES") or environ.get("SLURM_JOB_NUM_NODES"), 0)
    if job_nodes and job_nodes != nodes:
        raise ConfigError(f"SLURM allocated {job_nodes} nodes but --nnodes is {nodes}; set --nnodes {job_nodes}")


def global_rank(environ: Mapping[str, str] | None = None, devices_per_node: int = 1) -> int:
    """This process's global rank before the Trainer exists (torchrun/Lightning children, srun, or 0)."""
    env = os.environ if environ is None else environ
    if "RANK" in env:
        return _int(env["RANK"], 0)
    if "SLURM_PROCID" in env and under_srun(env):
        return _int(env["SLURM_PROCID"], 0)
    if "LOCAL_RANK" in env:
        return _int(env.get("NODE_RANK"), 0) * max(1, devices_per_node) + _int(env["LOCAL_RANK"], 0)
    return 0


def _int(value: str | None, default: int) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def compile_network(engine: Any) -> None:
    """``torch.compile`` the engine's network in place (``nn.Module.compile``), so state-dict keys keep no ``_orig_mod.``.

    The EMA copy is compiled too when there is one, and its semantic encoder on its own: the test stage runs the
    EMA network for reconstructions and calls ``ema_net.encoder`` directly for latents (--test_emb_only).
    """
    engine.net.compile()
    ema = getattr(engine, "ema_net", None)
    if ema is not None:
        ema.compile()
        encoder = getattr(ema, "encoder", None)
        if isinstance(encoder, torch.nn.Module):
            encoder.compile()
