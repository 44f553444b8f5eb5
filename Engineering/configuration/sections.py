"""The typed sections of a run configuration, grouped by what they control.

Each section is a frozen pydantic model. Its fields are either flat hyper-parameters (a command-line option or a
data-JSON key of the same name, stored in checkpoints as ``hparams``) or values read from the YAML config, listed in
the section's ``YAML`` table with their path. Command-line options have no default here: their defaults live in the
option table of :mod:`Engineering.configuration.cli` (one place), and :class:`~Engineering.configuration.run_config.
RunConfig` fills them in. Every other field's default is the one given here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from Engineering.configuration.shapes import parse_shape

#: YAML path of a field read from the YAML config
YamlPath = tuple[str, ...]


def _one_of(*choices: Any) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(map(str, choices))}")
        return value

    return check


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _shape_text(value: str) -> str:
    parse_shape(value)  # raises a ConfigError naming the problem; the flat value stays the original text
    return value


def one_of(*choices: Any) -> AfterValidator:
    """Restrict a field to ``choices``; unlike ``Literal``, numbers given as text (``"2"`` in a JSON file) pass."""
    return AfterValidator(_one_of(*choices))


Count = Annotated[int, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]


class Section(BaseModel):
    """Common behaviour: immutable, unknown keys refused, NaN and infinities refused unless a field allows them."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    #: field name -> path of the YAML key it is read from
    YAML: ClassVar[dict[str, YamlPath]] = {}
    #: field name -> prefix of the flat keys gathered into it (a dict keyed by the rest of the name)
    PREFIXED: ClassVar[dict[str, str]] = {}

    @classmethod
    def flat_fields(cls) -> list[str]:
        """Names of the fields that are flat hyper-parameters of the same name (options and data-JSON keys)."""
        return [name for name in cls.model_fields if name not in cls.YAML and name not in cls.PREFIXED]


class RunControl(Section):
    """What runs and how: task, run mode, epochs, batches, precision, devices, strategy, seed and paths."""

    YAML: ClassVar[dict[str, YamlPath]] = {"seed": ("seed",)}

    taskID: Annotated[int, one_of(0, 1, 2)]
    trainID: str
    fulltrainID: str
    run_name: str = ""  # set by the runner from the naming rules
    resume: bool
    load_best: bool
    load_model_4test: str
    run_mode: Annotated[int, one_of(0, 1, 2, 3, 4)]
    num_epochs: int = Field(ge=1)
    dev_run: int
    non_deter: bool
    seed: int = 1701
    accelerator: str
    ampmode: str
    matmul_precision: Annotated[str, one_of("highest", "high", "medium")]
    training_strategy: str
    ndevices: Count
    nnodes: int = Field(ge=1)
    sync_batchnorm: bool
    num_workers: Count
    num_threads: Count  # 0: the cores available to the process minus the DataLoader workers
    nbatch_prefetch: int | None = Field(ge=1)
    use_concurrent_dataloader: bool
    batch_size: int = Field(ge=1)
    test_batch_size: Count  # 0: the training batch size (at least 8 with --test_emb_only)
    effective_batch_size: int = Field(ge=1)
    n_train_batches: float = Field(gt=0)
    n_val_batches: float = Field(ge=0)
    auto_bs: bool
    auto_lr: bool
    compile_model: bool
    check_anomalies: bool
    profiler: str
    configyml_path: str
    datajson_path: str
    resolved_config: str
    run_dir: str  # with --resume: the run folder to test or continue (its name is the run name)
    trust_checkpoint: str  # taken from the command line only (the runner reads it from there)
    debug: bool
    load_hf: str
    preweights_path: str
    mem_limit: int | None = Field(default=None, ge=1)  # opt-in address-space limit in bytes (data JSON key)


class DataSettings(Section):
    """Where the data are and how samples are prepared: folders, folds, ``DS_*`` options, shape, normalisation."""

    YAML: ClassVar[dict[str, YamlPath]] = {
        "complex_mode": ("data", "complex_mode"),
        "yaml_dataset": ("data", "dataset"),
    }
    PREFIXED: ClassVar[dict[str, str]] = {"dataset": "DS_"}

    run_prefix: str = ""
    datadir: str = "."
    datafile: str = "data.h5"
    foldCSV: str | int | bool = ""
    foldID: Count
    save_path: str = ""
    tblog_path: str | None = None
    is_complexDS: bool = False
    complex_mode: Annotated[int, one_of(0, 1, 2, 3, -3, 4, -4, 5, 6)] = 1
    input_shape: Annotated[str, AfterValidator(_shape_text)]
    interp_fact: float = Field(gt=0)
    croppad: bool
    norm_type: Annotated[str, one_of("zscore", "minmax", "divbymax", "minmaxvol", "divbymaxvol")]
    zscore_mean: str
    zscore_std: str
    zscore_prenorm: str
    p_augment: Probability
    p_aug_horflip: Probability
    grey2RGB: Annotated[int, one_of(-1, 0, 1, 2)]
    #: the data JSON's ``DS_<name>`` keys without their prefix (checked by the dataset options)
    dataset: dict[str, Any] = Field(default_factory=dict)
    yaml_dataset: dict[str, Any] = Field(default_factory=dict)
    # sizes of the side tables found in the training data, recorded by the runner for the heads that learn them
    n_phenotypes: Count | None = None
    n_confounders: Count | None = None
    n_confounders_bincat: Count | None = None
    n_confounders_mulcat: Count | None = None
    n_confounders_cont: Count | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """``input_shape`` as integers."""
        return parse_shape(self.input_shape)

    @property
    def side_counts(self) -> dict[str, int]:
        """The side-table sizes that are known."""
        names = ("n_phenotypes", "n_confounders", "n_confounders_bincat", "n_confounders_mulcat", "n_confounders_cont")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class StepDecay(Section):
    """``training.LRDecay.type1``: StepLR."""

    decay_nepoch: int = Field(default=25, ge=1)
    decay_rate: float = Field(default=0.1, gt=0)


class PlateauDecay(Section):
    """``training.LRDecay.type2``: ReduceLROnPlateau on val_loss."""

    decay_rate: float = Field(default=0.1, gt=0, lt=1)
    patience: Count = 10
    threshold: float = Field(default=1e-4, ge=0)
    cooldown: Count = 0
    min_lr: float = Field(default=0.0, ge=0)


class LRDecay(Section):
    """``training.LRDecay``."""

    type1: StepDecay = StepDecay()
    type2: PlateauDecay = PlateauDecay()


class TrainingSettings(Section):
    """How the weights are fitted: optimiser, learning rate and its decay, clipping, accumulation, stopping."""

    YAML: ClassVar[dict[str, YamlPath]] = {
        "log_freq": ("training", "log_freq"),
        "im_log_freq": ("training", "im_log_freq"),
        "lr_decay": ("training", "LRDecay"),
        "nan_policy": ("training", "nan_policy"),
    }

    lr: float = Field(gt=0)
    optimiserID: int | str
    n_optimisers: int = Field(ge=-1)
    lossID: int
    ploss_model: str
    ploss_level: float = Field(ge=0, allow_inf_nan=True)
    ploss_type: str
    ploss_weights: str
    grad_clip_algo: Annotated[str, one_of("", "norm", "value")]
    grad_clip_val: float = Field(ge=0)
    lr_decay_type: Annotated[int, one_of(0, 1, 2)]
    lr_decay: LRDecay = LRDecay()
    early_stopping_patience: int = Field(ge=-1)
    auto_optim: bool
    log_freq: int = Field(default=50, ge=1)
    im_log_freq: int = -1  # image logging every N batches; negative disables it
    nan_policy: Annotated[str, BeforeValidator(_lower), one_of("stop", "skip")] = "stop"

    @property
    def clips(self) -> bool:
        """True when gradients are clipped (an algorithm and a non-zero value)."""
        return bool(self.grad_clip_algo) and self.grad_clip_val > 0


class ModelSettings(Section):
    """The network's outer shape, shared by every family."""

    YAML: ClassVar[dict[str, YamlPath]] = {"latent_dim": ("model", "latent_dim")}

    modelID: int
    is3D: Annotated[int, one_of(0, 1)]
    in_channels: int = Field(ge=1)
    out_channels: int = Field(ge=1)
    latent_dim: int | None = None

    @property
    def is_3d(self) -> bool:
        return bool(self.is3D)


class DiffAESettings(Section):
    """The diffusion autoencoder (taskID 1)."""

    YAML: ClassVar[dict[str, YamlPath]] = {"template": ("model", "DiffAE")}

    test_ema: bool
    test_with_TEval: bool
    test_emb_only: bool
    #: YAML ``model.DiffAE``: written over the DiffAE template (checked by the DiffAE config)
    template: dict[str, Any] = Field(default_factory=dict)


class PythaeSettings(Section):
    """The pythae autoencoders and VAEs (taskID 0)."""

    YAML: ClassVar[dict[str, YamlPath]] = {"options": ("model", "pythae")}

    pythae_model: str
    pythae_wrapper_mode: int  # choices: the pythae station's WRAPPER_MODES
    pythae_config: str
    #: YAML ``model.pythae`` (checked by the pythae model configuration)
    options: dict[str, Any] = Field(default_factory=dict)


class LatentSettings(Section):
    """The latent regressor/classifier (taskID 2)."""

    parent_trainID: str
    parent_outfolder: str
    ema_decay: Probability
    latent_task: Annotated[str, one_of("regression", "classification")] = "regression"
    # what the data module found, recorded by the runner so that a checkpoint rebuilds the same head
    latent_targets: list[str] = Field(default_factory=list)
    latent_classes: list[Any] = Field(default_factory=list)
    latent_target_mean: list[float] = Field(default_factory=list)
    latent_target_std: list[float] = Field(default_factory=list)


class EvalOptions(Section):
    """YAML ``eval``: the test-time image metrics."""

    norm4diff: bool = False
    store_fullscale_evals: bool = False
    n_calc_processes: int = Field(default=0, ge=-1)
    metrics2use: dict[str, bool] = Field(default_factory=dict)


class OutputSettings(Section):
    """What a run writes and logs: output folder, saved reconstructions, metrics, TensorBoard and W&B."""

    YAML: ClassVar[dict[str, YamlPath]] = {"save_recon": ("training", "save_recon"), "eval": ("eval",)}

    output_suffix: str
    n_save_recon_subs: float = Field(ge=0)
    save_recon_subs: str
    save_recon: bool = True
    eval: EvalOptions = EvalOptions()
    tbactive: bool
    wnbactive: bool
    wnbproject: str | None
    wnbentity: str | None
    wnbgroup: str | None
    wnbprefix: str
    wnbmodellog: str | None
    wnbmodelfreq: int = Field(ge=1)


#: section name on RunConfig -> its model, in the order they are built and reported
SECTIONS: dict[str, type[Section]] = {
    "run": RunControl,
    "data": DataSettings,
    "training": TrainingSettings,
    "model": ModelSettings,
    "diffae": DiffAESettings,
    "pythae": PythaeSettings,
    "latent": LatentSettings,
    "outputs": OutputSettings,
}
