"""Command-line options of the three executors: one shared option table with three default profiles.

The table reproduces every option of the original ``main_recon.py``, ``main_diffAE.py`` and ``main_latentcls.py``
(names, short aliases, types, per-script defaults, presence per script). Options the parser does not know, such as
``--model§latent_dim 64`` or ``--json§save_path /x``, are left for :mod:`Engineering.configuration.overrides`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from Engineering.errors import ConfigError

SCRIPTS: dict[str, int] = {"recon": 0, "diffae": 1, "latentcls": 2}
"""Script name → the taskID it selects by default."""

PROGS: dict[str, str] = {"recon": "main_recon.py", "diffae": "main_diffAE.py", "latentcls": "main_latentcls.py"}

BOOL = "bool-opt"
_ALL = frozenset(SCRIPTS)
_NO_LATENTCLS = frozenset({"recon", "diffae"})
_DIFFAE = frozenset({"diffae"})
_LATENTCLS = frozenset({"latentcls"})

DATAJSON_DEFAULT = "Configs/UKBB208/dataNpath_F20208_time2slc_4ChTransverse_Crop128.json"
DATAJSON_3PHENO = "Configs/UKBB208/dataNpath_F20208_time2slc_4ChTransverse_Crop128_conf_3pheno.json"


def optimiser_id(value: str) -> int | str:
    """``--optimiserID``: an integer id (0 Adam, 1 AdamW, ...) or, if not an integer, an optimiser name."""
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class Option:
    """One row of the option table: flags, type (or ``BOOL``), default per script and the scripts that have it."""

    flags: tuple[str, ...]
    kind: Callable[[str], Any] | str
    default: Any
    help: str
    per_script: dict[str, Any] = field(default_factory=dict)
    scripts: frozenset[str] = _ALL

    @property
    def dest(self) -> str:
        """Attribute name on the parsed Namespace."""
        return self.flags[-1].lstrip("-")

    def default_for(self, script: str) -> Any:
        """Default of this option in ``script``."""
        return self.per_script.get(script, self.default)


def _o(*flags: str, kind: Any, default: Any, help: str, only: frozenset[str] = _ALL, **per_script: Any) -> Option:
    return Option(tuple(flags), kind, default, help, dict(per_script), only)


# Same row order as the original scripts; script-only options sit where the original puts them.
OPTIONS: tuple[Option, ...] = (
    _o(
        "--taskID",
        kind=int,
        default=0,
        diffae=1,
        latentcls=2,
        help="Engine: 0 = pythae AE/VAE (ReconEngine), 1 = DiffAE, 2 = latent regressor (ClassifyLatentEngine).",
    ),
    _o(
        "--trainID",
        kind=str,
        default="prova1",
        diffae="prova3D_diffAE",
        latentcls="provafp16_diffAE",
        help="Base name of the run; fold, precision and engine tags are appended.",
    ),
    _o(
        "--resume",
        kind=BOOL,
        default=False,
        help="Resume from (or, with run_mode 2, test) a checkpoint of this run or of --load_model_4test.",
    ),
    _o(
        "--load_best",
        kind=BOOL,
        default=False,
        help="With --resume, pick the best (epoch-named) checkpoint instead of the last one.",
    ),
    _o(
        "--load_model_4test",
        kind=str,
        default="",
        help="Run folder of another run whose Checkpoints/ is searched instead of this run's (with --resume).",
    ),
    _o("--num_workers", kind=int, default=8, help="DataLoader workers for each loader (capped at the CPUs available)."),
    _o(
        "--num_threads",
        kind=int,
        default=0,
        help="torch intra-op threads; 0 = the cores available to the process (affinity, cgroup quota, "
        "SLURM_CPUS_PER_TASK) minus the DataLoader workers.",
    ),
    _o(
        "--use_concurrent_dataloader",
        kind=BOOL,
        default=False,
        help="Refused: the third-party concurrent_dataloader package is not supported (parsed for the original's commands).",
    ),
    _o("--batch_size", kind=int, default=32, diffae=2, latentcls=100, help="Real per-step batch size."),
    _o(
        "--effective_batch_size",
        kind=int,
        default=96,
        diffae=2,
        latentcls=100,
        help="Target batch size; gradients are accumulated over max(1, effective // batch_size) batches.",
    ),
    _o(
        "--auto_optim",
        kind=BOOL,
        default=False,
        diffae=True,
        latentcls=True,
        help="Lightning automatic optimisation (else manual optimisation through the model's own step).",
    ),
    _o(
        "--n_train_batches",
        kind=float,
        default=0.25,
        latentcls=1.0,
        help="Trainer limit_train_batches: a fraction if <= 1, a number of batches if > 1.",
    ),
    _o(
        "--n_val_batches",
        kind=float,
        default=0.25,
        diffae=0.025,
        latentcls=1.0,
        help="Trainer limit_val_batches: a fraction if <= 1, a number of batches if > 1.",
    ),
    _o(
        "--nbatch_prefetch",
        kind=int,
        default=2,
        diffae=20,
        latentcls=20,
        help="DataLoader prefetch_factor (None when num_workers is 0).",
    ),
    _o("--configyml_path", kind=str, default="Configs/config_v1.yaml", help="YAML config file."),
    _o(
        "--datajson_path",
        kind=str,
        default=DATAJSON_DEFAULT,
        latentcls=DATAJSON_3PHENO,
        help="dataNpath JSON; every key becomes a hyper-parameter.",
    ),
    _o("--foldID", kind=int, default=0, help="Row of the fold CSV to use."),
    _o(
        "--output_suffix",
        kind=str,
        default="",
        help="Output folder becomes Output_<suffix>; also suffixes the test metric names.",
    ),
    _o("--accelerator", kind=str, default="auto", help="Lightning accelerator (auto, gpu, cpu, mps, ...)."),
    _o(
        "--ampmode",
        kind=str,
        default="32",
        diffae="16-mixed",
        latentcls="32-true",
        help="Trainer precision (32, 16-mixed, bf16-mixed, 32-true, ...); part of the run name.",
    ),
    _o(
        "--fulltrainID",
        kind=str,
        default="",
        only=_DIFFAE,
        help="If non-empty, used verbatim as trainID and run name (no prefix or suffixes).",
    ),
    _o(
        "--matmul_precision",
        kind=str,
        default="highest",
        help="torch.set_float32_matmul_precision value; applied if not 'highest' and the GPU supports bf16.",
    ),
    _o(
        "--run_mode",
        kind=int,
        default=4,
        help="0 train; 1 train+validate; 2 test; 3 train then test; 4 train+validate then test.",
    ),
    _o(
        "--dev_run",
        kind=int,
        default=0,
        help="0 normal run; n > 0 Lightning fast_dev_run=n; n < 0 barebones run without loggers or checkpoints.",
    ),
    _o(
        "--non_deter",
        kind=BOOL,
        default=False,
        help="Allow non-deterministic algorithms (else seed from the config and run deterministically).",
    ),
    _o(
        "--norm_type",
        kind=str,
        default="divbymaxvol",
        diffae="zscore",
        latentcls="zscore",
        help="Intensity normalisation: zscore, minmax, divbymax, minmaxvol or divbymaxvol.",
    ),
    _o(
        "--zscore_mean",
        kind=str,
        default="",
        diffae="0.5",
        latentcls="0.5",
        help="Comma-separated per-channel means for zscore.",
    ),
    _o(
        "--zscore_std",
        kind=str,
        default="",
        diffae="0.5",
        latentcls="0.5",
        help="Comma-separated per-channel standard deviations for zscore.",
    ),
    _o(
        "--zscore_prenorm",
        kind=str,
        default="",
        diffae="minmaxvol",
        latentcls="minmaxvol",
        help="Normalisation applied before zscore: a number to divide by or a norm_type name.",
    ),
    _o("--test_ema", kind=BOOL, default=True, only=_DIFFAE, help="Test with the EMA network (else the base network)."),
    _o(
        "--test_with_TEval",
        kind=BOOL,
        default=True,
        only=_DIFFAE,
        help="At test time use T_eval steps for inversion and decoding (else 200/100).",
    ),
    _o(
        "--test_emb_only",
        kind=BOOL,
        default=False,
        only=_DIFFAE,
        help="At test time write the embeddings only (no recon.h5, no metrics).",
    ),
    _o(
        "--test_batch_size",
        kind=int,
        default=0,
        only=_NO_LATENTCLS,
        help="Batch size of the test loader; 0 = --batch_size, or at least 8 with --test_emb_only.",
    ),
    _o(
        "--ema_decay",
        kind=float,
        default=0.9999,
        only=_LATENTCLS,
        help="EMA decay of the regressor's shadow copy, updated after every training batch.",
    ),
    _o(
        "--parent_trainID",
        kind=str,
        default="",
        only=_LATENTCLS,
        help="Run folder (under save_path) of the autoencoder whose latents are regressed.",
    ),
    _o(
        "--parent_outfolder",
        kind=str,
        default="Output_fullDSV2",
        only=_LATENTCLS,
        help="Output subfolder of the parent run that holds emb.h5.",
    ),
    _o("--load_hf", kind=str, default="", help="Hugging Face model id whose weights are loaded into the engine."),
    _o(
        "--training_strategy",
        kind=str,
        default="",
        help="Lightning strategy (ddp, fsdp, deepspeed_stage_2, ...); blank or 'default' = Lightning's default.",
    ),
    _o("--ndevices", kind=int, default=0, help="Trainer devices; 0 means 1."),
    _o("--nnodes", kind=int, default=1, help="Trainer num_nodes."),
    _o("--sync_batchnorm", kind=BOOL, default=False, help="Trainer sync_batchnorm."),
    _o(
        "--num_epochs",
        kind=int,
        default=50,
        diffae=200,
        latentcls=500,
        help="Trainer max_epochs (a total; resuming continues up to it).",
    ),
    _o("--lr", kind=float, default=1e-4, latentcls=1e-3, help="Learning rate."),
    _o(
        "--lossID",
        kind=int,
        default=0,
        latentcls=1,
        help="Recon: -2 LPIPS, -1 perceptual, 0 L1, 1 MSE, 2 SmoothL1, 3 MS-SSIM, 4 SSIM. "
        "Latent regressor: 0 L1, 1 MSE, 2 SmoothL1. Ignored by DiffAE.",
    ),
    _o(
        "--optimiserID",
        kind=optimiser_id,
        default=0,
        help="0 Adam, 1 AdamW, 2 RAdam, 3 Madam, 4 MTAdam, 100 DeepSpeedCPUAdam, 200 FusedAdam, "
        "or the name of a torch.hub kozistr/pytorch_optimizer optimiser.",
    ),
    _o(
        "--n_optimisers",
        kind=int,
        default=-1,
        help="0/-1 infer from the model; 1 a single optimiser; > 1 that many optimisers.",
    ),
    _o(
        "--ploss_model",
        kind=str,
        default="med1ch3D.UNetMSSDS6",
        help="Perceptual-loss network (lossID -1) or LPIPS net name (lossID -2).",
    ),
    _o("--ploss_level", kind=int, default=math.inf, help="Perceptual-loss depth; inf = all levels."),
    _o("--ploss_type", kind=str, default="L1", help="Perceptual-loss distance."),
    _o(
        "--ploss_weights",
        kind=str,
        default="",
        help="Weights file of the --lossID -1 network (default: the original's pretrained_weights_1ch/ file).",
    ),
    _o("--grad_clip_algo", kind=str, default="norm", help="Gradient clipping: norm or value; blank disables it."),
    _o("--grad_clip_val", kind=float, default=1, help="Gradient clipping value (used if the algorithm is set)."),
    _o("--lr_decay_type", kind=int, default=0, help="0 none; 1 StepLR; 2 ReduceLROnPlateau (config training.LRDecay)."),
    _o(
        "--early_stopping_patience",
        kind=int,
        default=-1,
        help="Early stopping on val_loss after this many epochs without improvement; -1 disables.",
    ),
    _o(
        "--interp_fact",
        kind=float,
        default=1,
        only=_NO_LATENTCLS,
        help="If not 1, zoom each raw sample by this factor (linear) before crop/pad; adds _interp<f> to the run name.",
    ),
    _o(
        "--input_shape",
        kind=str,
        default="56,128,128",
        diffae="50,128,128",
        only=_NO_LATENTCLS,
        help="Comma-separated spatial shape for crop/pad and the model (D,H,W in 3D; H,W in 2D).",
    ),
    _o(
        "--croppad",
        kind=BOOL,
        default=True,
        only=_NO_LATENTCLS,
        help="Centre-crop/zero-pad each sample to input_shape.",
    ),
    _o(
        "--n_save_recon_subs",
        kind=float,
        default=13,
        only=_NO_LATENTCLS,
        help="Test subjects whose reconstructions are saved: 1 = all, < 1 = a fraction, > 1 = a number of subjects.",
    ),
    _o(
        "--save_recon_subs",
        kind=str,
        default="",
        only=_NO_LATENTCLS,
        help="Comma-separated subject IDs whose reconstructions are saved (overrides n_save_recon_subs).",
    ),
    _o("--p_augment", kind=float, default=1, help="Augmentation switch: augmentation is on when > 0."),
    _o("--p_aug_horflip", kind=float, default=0.5, help="Probability of a horizontal flip of a training sample."),
    _o(
        "--grey2RGB",
        kind=float,
        default=-1,
        help="-1 off; 0 [zeros, x, zeros]; 1 [x, x, x]; 2 [noise, x, noise] along the channel axis.",
    ),
    _o(
        "--modelID",
        kind=int,
        default=0,
        help="Recon: -1 Identity (debug), 0 pythae. Latent regressor: -1 Identity, 0 linear. Ignored by DiffAE.",
    ),
    _o(
        "--pythae_model",
        kind=str,
        default="factor_vae",
        only=_NO_LATENTCLS,
        help="pythae model name; a custom_ prefix selects an in-repo model.",
    ),
    _o("--pythae_wrapper_mode", kind=int, default=0, only=_NO_LATENTCLS, help="0 no wrapper; 1 LSTM-wrapped model."),
    _o(
        "--pythae_config",
        kind=str,
        default="",
        only=_NO_LATENTCLS,
        help="pythae model-config JSON relative to the pythae drive's configs folder; blank = the model's default.",
    ),
    _o("--preweights_path", kind=str, default="", help="Checkpoint whose state_dict is loaded at construction."),
    _o("--is3D", kind=int, default=1, latentcls=0, help="1 = 3D model and tensors; 0 = 2D."),
    _o(
        "--in_channels",
        kind=int,
        default=1,
        latentcls=128,
        help="Model input channels (latent regressor: the latent length).",
    ),
    _o("--out_channels", kind=int, default=1, only=_NO_LATENTCLS, help="Model output channels."),
    _o("--compile_model", kind=BOOL, default=False, help="torch.compile the model before fitting."),
    _o("--check_anomalies", kind=BOOL, default=False, help="Trainer detect_anomaly."),
    _o("--auto_bs", kind=BOOL, default=False, help="Search the batch size with the Lightning Tuner (binsearch)."),
    _o("--auto_lr", kind=BOOL, default=False, help="Find the learning rate with the Lightning Tuner."),
    _o("--profiler", kind=str, default="", help="Trainer profiler (simple, advanced, ...); blank = none."),
    _o("-tba", "--tbactive", kind=BOOL, default=True, help="TensorBoard logger."),
    _o("-wnba", "--wnbactive", kind=BOOL, default=False, help="Weights & Biases logger (off unless asked)."),
    _o("-wnbp", "--wnbproject", kind=str, default=None, latentcls="UKBBCardiacImLatent", help="W&B project."),
    _o("-wnbe", "--wnbentity", kind=str, default=None, latentcls="ukbb_img_latent", help="W&B entity."),
    _o("-wnbg", "--wnbgroup", kind=str, default=None, latentcls="latentClsDiffAE", help="W&B group."),
    _o("-wnbpf", "--wnbprefix", kind=str, default="", help="Prefix of the W&B run name (<prefix>_<run_name>)."),
    _o(
        "-wnbml",
        "--wnbmodellog",
        kind=str,
        default=None,
        help="If set (and not 'None'): wandb.watch(model, log=<value>), e.g. gradients, parameters, all.",
    ),
    _o("-wnbmf", "--wnbmodelfreq", kind=int, default=100, help="log_freq of wandb.watch."),
    _o(
        "--trust_checkpoint",
        kind=str,
        default="",
        help="A checkpoint file or folder you made or vouch for: it may hold pickled objects beyond tensors, which "
        "are then fully unpickled (this can run code). Without it such files are refused. Taken from the command "
        "line only, never from a YAML, data JSON or replayed config.",
    ),
    _o("--debug", kind=BOOL, default=False, help="Show full tracebacks instead of one-line errors."),
    _o(
        "--resolved_config",
        kind=str,
        default="",
        help="Replay a run from a saved resolved-config YAML; § overrides and explicit options still apply.",
    ),
    _o(
        "--run_dir",
        kind=str,
        default="",
        help="With --resume: the run folder to test or continue, instead of the one derived from trainID, fold, "
        "ampmode and the data JSON; its stored configuration is the starting point (explicit options override it).",
    ),
)

EPILOG = (
    "Unknown options are overrides: --a§b§c VALUE sets the YAML key a.b.c (created if missing); "
    "--json§KEY VALUE sets a key of the data JSON (nested with more §); a bare --x§y is True, --no-x§y is False. "
    "Values are parsed as int, float, bool word, Python literal (list, dict, tuple, None) or string."
)


def _check_script(script: str) -> None:
    if script not in SCRIPTS:
        raise ConfigError(f"unknown script {script!r}: expected one of {', '.join(SCRIPTS)}")


def options_for(script: str) -> list[Option]:
    """Options present in ``script``, in table order."""
    _check_script(script)
    return [opt for opt in OPTIONS if script in opt.scripts]


def option_defaults(script: str) -> dict[str, Any]:
    """Default value of every option of ``script``, keyed by attribute name."""
    return {opt.dest: opt.default_for(script) for opt in options_for(script)}


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one-line ConfigErrors (no usage dump, exit code 2)."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message} (see --help)")


def build_parser(script: str, *, suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """Parser of ``script`` ("recon", "diffae" or "latentcls") with that script's options and defaults.

    With ``suppress_defaults`` the parsed Namespace holds only the options given on the command line.
    """
    parser = _Parser(
        prog=PROGS.get(script, script),
        description=f"ImLatent {script} executor (default taskID {SCRIPTS.get(script, '?')}).",
        epilog=EPILOG,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )
    for opt in options_for(script):
        help_text = opt.help.replace("%", "%%")
        default = argparse.SUPPRESS if suppress_defaults else opt.default_for(script)
        if opt.kind == BOOL:
            parser.add_argument(*opt.flags, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            parser.add_argument(*opt.flags, type=opt.kind, default=default, help=help_text)
    return parser
