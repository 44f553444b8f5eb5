"""Lightning DataModule over :class:`H5SeriesDataset` and the recon-subject choice.

Batch (default collation): ``inp.data`` (B, C, …) tensor, ``inp.volmin``/``inp.volmax`` float64 (B,) tensors,
``key`` list of B str, ``indices`` list of three int64 (B,) tensors.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from Engineering.configuration.run_config import RunConfig
from Engineering.data.checks import Expectation
from Engineering.data.folds import Fold, read_folds
from Engineering.data.h5dataset import H5SeriesDataset, list_patients
from Engineering.data.options import DatasetOptions
from Engineering.data.samplers import unrepeated_test_sampler
from Engineering.data.store import as_location, join_location
from Engineering.errors import ConfigError
from Engineering.transforms import Compose, TransformOptions, build_transforms
from Engineering.transforms.spatial import describe_fit

log = logging.getLogger("imlatent.data")

_FALSY = {"", "0", "false", "none", "no"}


@dataclass(frozen=True)
class LoaderOptions:
    """DataLoader settings shared by every split."""

    batch_size: int = 1
    num_workers: int = 0
    nbatch_prefetch: int = 2
    test_batch_size: int = 0  # 0: batch_size

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} is invalid; expected a positive integer")
        if self.test_batch_size < 0:
            raise ConfigError(f"test_batch_size={self.test_batch_size} is invalid; expected 0 (= batch_size) or more")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers={self.num_workers} is invalid; expected 0 or more")


#: test batch of ``--test_emb_only`` unless --test_batch_size says otherwise: the encoder alone needs far less memory
#: than training, and fewer, larger batches cut the per-batch cost (measured in benchmarks/README.md)
EMB_ONLY_TEST_BATCH = 8


def inference_batch_size(cfg: RunConfig) -> int:
    """``--test_batch_size`` if > 0; else ``max(batch_size, EMB_ONLY_TEST_BATCH)`` with --test_emb_only; else 0."""
    if cfg.run.test_batch_size:
        return cfg.run.test_batch_size
    if cfg.diffae.test_emb_only:
        return max(cfg.run.batch_size, EMB_ONLY_TEST_BATCH)
    return 0


def fold_csv_given(value: Any) -> bool:
    """foldCSV is falsy for ``""``, ``0``, ``False``, None and the strings ``0``/``false``/``none``/``no``."""
    return bool(value) and str(value).strip().lower() not in _FALSY


def choose_recon_subjects(test_ids: Sequence[str], n_save_recon_subs: float, save_recon_subs: str) -> set[str]:
    """Recon subjects: explicit comma list, else n == 1 all, n < 1 a fraction, n > 1 a count (``random``), 0 none."""
    explicit = [s.strip() for s in str(save_recon_subs or "").split(",") if s.strip()]
    if explicit:
        return set(explicit)
    ids = list(test_ids)
    n = float(n_save_recon_subs)
    if n == 1:
        return set(ids)
    if n <= 0:
        return set()
    count = int(len(ids) * n) if n < 1 else min(int(n), len(ids))
    return set(random.sample(ids, count))


def merge_dataset_options(
    norm_type: str, zscore_prenorm: str, yaml_dataset: Mapping[str, Any] | None, ds_keys: Mapping[str, Any]
) -> DatasetOptions:
    """Merge order: ``{fetchMinMax}`` → YAML ``data.dataset`` → JSON ``DS_*`` (prefix stripped); later wins."""
    merged: dict[str, Any] = {"fetchMinMax": "vol" in norm_type or "vol" in (zscore_prenorm or "")}
    valid = DatasetOptions.field_names()
    for source, values in (("YAML data.dataset", dict(yaml_dataset or {})), ("dataNpath JSON", dict(ds_keys))):
        unknown = sorted(k for k in values if k not in valid)
        if unknown:
            prefix = "DS_" if source == "dataNpath JSON" else ""
            raise ConfigError(
                f"{source}: unknown dataset option(s) {', '.join(prefix + k for k in unknown)}; "
                f"valid: {', '.join(prefix + k for k in valid)}"
            )
        merged.update(values)
    return DatasetOptions.from_mapping(merged, "dataset options")


class H5DataModule(L.LightningDataModule):
    """Train/val/test/predict datasets of one HDF5 file, split by an optional fold CSV row.

    ``fold`` None means "whole file" for every split. With ``merge_train_val`` the training set is train ∪ val and
    there is no validation set. ``recon_subjects`` (exact IDs) is set by ``setup("test")``.
    """

    def __init__(
        self,
        h5_path: str | Path,
        fold: Fold | None,
        dataset_options: DatasetOptions,
        transform_options: TransformOptions,
        loader: LoaderOptions,
        merge_train_val: bool,
        n_save_recon_subs: float,
        save_recon_subs: str,
    ) -> None:
        super().__init__()
        self.h5_path = as_location(h5_path)
        self.fold = fold
        self.dataset_options = dataset_options
        self.transform_options = transform_options
        self.loader = loader
        self.merge_train_val = merge_train_val
        self.n_save_recon_subs = n_save_recon_subs
        self.save_recon_subs = save_recon_subs
        self.train_transform, self.eval_transform = build_transforms(transform_options)
        self.train_ds: H5SeriesDataset | None = None
        self.val_ds: H5SeriesDataset | None = None
        self.test_ds: H5SeriesDataset | None = None
        self.predict_ds: H5SeriesDataset | None = None
        self.recon_subjects: set[str] = set()
        self._shapes_announced = False
        self._recon_drawn = False

    @classmethod
    def from_config(cls, cfg: RunConfig, merge_train_val: bool) -> H5DataModule:
        """Build from the run configuration (data and loader settings, ``DS_*`` keys, YAML ``data`` section)."""
        data, run = cfg.data, cfg.run
        options = merge_dataset_options(data.norm_type, data.zscore_prenorm, data.yaml_dataset, data.dataset)
        transform_options = TransformOptions(
            norm_type=data.norm_type,
            zscore_mean=data.zscore_mean,
            zscore_std=data.zscore_std,
            zscore_prenorm=data.zscore_prenorm,
            interp_fact=data.interp_fact,
            croppad=data.croppad,
            input_shape=data.shape,
            is3D=cfg.model.is_3d,
            grey2RGB=data.grey2RGB,
            is_complexDS=data.is_complexDS,
            complex_mode=data.complex_mode,
            p_augment=data.p_augment,
            p_aug_horflip=data.p_aug_horflip,
        )
        loader = LoaderOptions(run.batch_size, run.num_workers, run.nbatch_prefetch or 2, inference_batch_size(cfg))
        datadir = Path(data.datadir)
        fold = read_folds(datadir / str(data.foldCSV), data.foldID) if fold_csv_given(data.foldCSV) else None
        outputs = cfg.outputs
        return cls(
            join_location(datadir, data.datafile),
            fold,
            options,
            transform_options,
            loader,
            merge_train_val,
            outputs.n_save_recon_subs,
            outputs.save_recon_subs,
        )

    def split_ids(self, split: str) -> list[str] | None:
        """Patient IDs of ``split`` (train, val, test); None = every patient in the file."""
        if self.fold is None:
            return None
        if split == "train" and self.merge_train_val:
            return list(dict.fromkeys(self.fold.train + self.fold.val))
        return self.fold.split(split)

    @property
    def expectation(self) -> Expectation:
        """What the run does with each series, for the data checks (shared with validate_h5)."""
        t = self.transform_options
        return Expectation(self.dataset_options.fetchMinMax, t.norm_type, t.is_complexDS)

    def _dataset(self, split: str, transform: Compose, options: DatasetOptions | None = None) -> H5SeriesDataset:
        ids = self.split_ids(split) if split != "predict" else None
        options = options or self.dataset_options
        return H5SeriesDataset(self.h5_path, ids, options, transform, split, expect=self.expectation)

    def build(self, stage: str | None = None) -> None:
        """Build (and so check) the datasets of ``stage`` (fit, validate, test, predict), each once.

        The runner builds the splits it will read before it writes anything, so bad data leaves no run folder.
        """
        if stage in ("fit", None) and self.train_ds is None:
            self.train_ds = self._dataset("train", self.train_transform)
        if stage in ("fit", "validate", None) and not self.merge_train_val and self.val_ds is None:
            self.val_ds = self._dataset("val", self.eval_transform)
        if stage in ("test", None) and self.test_ds is None:
            # faithful: test items never carry phenotypes/confounders (without mutating the shared options)
            test_options = replace(self.dataset_options, fetch_phenotypes=False, fetch_confounders=False)
            self.test_ds = self._dataset("test", self.eval_transform, test_options)
        if stage == "predict" and self.predict_ds is None:
            self.predict_ds = self._dataset("predict", self.eval_transform)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets of ``stage``; "test" also draws the recon subjects, once.

        Later calls reuse what is built, so indexes, side tables and the recon-subject draw are not repeated.
        """
        self.build(stage)
        if stage in ("test", None) and not self._recon_drawn:
            test_ids = self.split_ids("test")
            ids = list_patients(self.h5_path) if test_ids is None else test_ids
            self.recon_subjects = choose_recon_subjects(ids, self.n_save_recon_subs, self.save_recon_subs)
            self._recon_drawn = True
        self._announce_shapes()

    def _announce_shapes(self) -> None:
        """Once: say how the data's shape becomes the network's input shape; warn when most of it is padding."""
        built = [
            (name, ds)
            for name, ds in (("train", self.train_ds), ("test", self.test_ds), ("predict", self.predict_ds))
            if ds is not None
        ]
        if self._shapes_announced or not built:
            return
        self._shapes_announced = True
        split, ds = built[0]
        opts = self.transform_options
        shape = ds.fetch(0)["inp"]["data"].shape
        ds.close()  # the loaders' workers open their own handles
        line, share = describe_fit(shape, opts.input_shape, opts.interp_fact, opts.croppad)
        log.info("Input shapes (first %s sample): %s", split, line)
        if share > 0.5:
            log.warning(
                "%.0f%% of the network input is zero padding: --input_shape %s is much larger than the data; "
                "a crop closer to the data's shape trains on less padding",
                100 * share,
                ",".join(map(str, opts.input_shape)),
            )

    @property
    def batch_size(self) -> int:
        """Batch size of every loader; settable, so Lightning's batch-size finder (--auto_bs) can scale it."""
        return self.loader.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self.loader = replace(self.loader, batch_size=int(value))

    @property
    def side_counts(self) -> dict[str, int]:
        """``n_phenotypes``/``n_confounders*`` of the training set (for the engine to record on hparams)."""
        return dict(self.train_ds.side.counts) if self.train_ds is not None else {}

    def _loader(self, dataset: Dataset | None, name: str, train: bool, batch_size: int = 0) -> DataLoader:
        if dataset is None:
            raise ConfigError(f"the {name} dataset is not set up; call setup() with the matching stage first")
        workers = self.loader.num_workers
        batch_size = batch_size or self.loader.batch_size
        drop_last = train and len(dataset) >= batch_size  # type: ignore[arg-type]
        if train and not drop_last:
            log.warning(
                "training set (%d samples) is smaller than batch_size %d; keeping the partial batch",
                len(dataset),  # type: ignore[arg-type]  # torch's Dataset declares no __len__; ours all have one
                self.loader.batch_size,
            )
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            drop_last=drop_last,
            num_workers=workers,
            prefetch_factor=self.loader.nbatch_prefetch if workers > 0 else None,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_ds, "train", True)

    def val_dataloader(self) -> DataLoader | list:
        """The validation loader; an empty list (no validation) when train and val are merged."""
        return [] if self.merge_train_val else self._loader(self.val_ds, "val", False)

    def test_dataloader(self) -> DataLoader:
        """The test loader; under DDP each rank reads a disjoint, unpadded share (every sample inferred once)."""
        loader = self._loader(self.test_ds, "test", False, self.loader.test_batch_size)
        sampler = unrepeated_test_sampler(loader.dataset)
        if sampler is None:
            return loader
        return DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=sampler,
            num_workers=loader.num_workers,
            prefetch_factor=loader.prefetch_factor,
            pin_memory=loader.pin_memory,
        )

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_ds, "predict", False)
