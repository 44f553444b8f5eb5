"""Latent data for taskID 2: a parent run's ``emb.h5`` joined with phenotype targets.

Input: ``<save_path>/<parent_trainID>/<parent_outfolder>/emb.h5`` (one (1, 1, 1, L) latent per series) and the
``DS_phenotypes`` TSV (``{path, cols}``, indexed by ``FID`` or ``f.eid``), inner-joined on the integer subject ID.
Every series of a subject is one item (a subject with visits 2 and 3 gives two items).

Splits come from the image dataset's fold CSV (``<datadir>/<foldCSV>``, exact-ID membership, not the
original's substring test); without a fold CSV every split is the whole file (the original crashed there).
Normalisation statistics are fitted on the fold's ``train`` column only and applied to every split (the original
fitted each split on itself): one scalar mean/std over all latent values (as the original's global scalar) and a
per-column mean/std for regression targets. Fitting on ``train`` even when run_mode 0/3 trains on train ∪ val keeps
a later ``run_mode 2`` test on the same statistics.

Targets (``latent_task`` in the dataNpath JSON, or ``--json§latent_task classification``):
``regression`` (default, the original) z-scored floats ``(n_pheno,)``; ``classification`` one column whose sorted
distinct values are the classes, given as an int64 class index.

Item: ``latent`` float32 (L,), ``phenotypes`` float32 (n_pheno,) or int64 (), ``subID`` int, ``fieldID``,
``instanceID``, ``dsID`` str.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from Engineering.configuration.run_config import RunConfig
from Engineering.data.datamodule import fold_csv_given
from Engineering.data.folds import Fold, read_folds
from Engineering.data.sidecars import read_table
from Engineering.errors import ConfigError, DataError
from Engineering.outputs.latent_tables import emb_table, latent_columns

log = logging.getLogger("imlatent.data")

TASKS = ("regression", "classification")


@dataclass(frozen=True)
class LatentTargets:
    """What the head predicts: the phenotype columns and, for classification, the class values of the column."""

    task: str
    columns: tuple[str, ...]
    classes: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        self.check(self.task, self.columns)

    @staticmethod
    def check(task: str, columns: Sequence[str]) -> None:
        """Validate the task name and the number of target columns."""
        if task not in TASKS:
            raise ConfigError(f"latent_task {task!r} is unknown; valid: {', '.join(TASKS)}")
        if not columns:
            raise ConfigError("DS_phenotypes.cols is empty; expected at least one phenotype column")
        if task == "classification" and len(columns) != 1:
            raise ConfigError(
                f"latent_task classification takes one DS_phenotypes column; got {len(columns)}: {','.join(columns)}"
            )

    @property
    def n_outputs(self) -> int:
        """Width of the head: number of columns (regression) or classes (classification)."""
        return len(self.classes) if self.task == "classification" else len(self.columns)


@dataclass
class LatentNormaliser:
    """Train-split statistics: a scalar for the latents, one mean/scale per regression column."""

    latent_mean: float = 0.0
    latent_std: float = 1.0
    target_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    target_std: np.ndarray = field(default_factory=lambda: np.ones(0))

    @classmethod
    def fit(cls, latents: np.ndarray, targets: np.ndarray | None) -> LatentNormaliser:
        """Fit on training latents (N, L) and regression targets (N, n) (None for classification)."""
        if latents.size == 0:
            raise DataError("the train split has no latents; expected at least one series to fit normalisation on")
        std = float(latents.std())
        out = cls(float(latents.mean()), std if std > 0 else 1.0)
        if targets is not None:
            scale = targets.std(axis=0)
            out.target_mean, out.target_std = targets.mean(axis=0), np.where(scale > 0, scale, 1.0)
        return out

    def latents(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.latent_mean) / self.latent_std).astype(np.float32)

    def targets(self, y: np.ndarray) -> np.ndarray:
        return ((y - self.target_mean) / self.target_std).astype(np.float32)

    def original_targets(self, y: np.ndarray) -> np.ndarray:
        """Standardised regression values (N, n) back in phenotype units."""
        return y * self.target_std + self.target_mean


class LatentDataset(Dataset):
    """Items of one split; arrays are already normalised."""

    def __init__(self, frame: pd.DataFrame, latents: np.ndarray, targets: np.ndarray) -> None:
        self.frame = frame.reset_index(drop=True)
        self.latents = torch.from_numpy(latents)
        self.targets = torch.from_numpy(targets)

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.frame.iloc[index]
        return {
            "latent": self.latents[index],
            "phenotypes": self.targets[index],
            "subID": int(row["subID"]),
            "fieldID": str(row["fieldID"]),
            "instanceID": str(row["instanceID"]),
            "dsID": str(row["data_tag"]),
        }


def _fold_ints(ids: Sequence[str], split: str, fold_csv: Path | None) -> set[int]:
    bad = [i for i in ids if not str(i).strip().isdigit()]
    if bad:
        raise DataError(f"fold CSV {fold_csv}: {split} ID {bad[0]!r} is not an integer; expected numeric subject IDs")
    return {int(i) for i in ids}


class LatentDataModule(L.LightningDataModule):
    """Train/val/test/predict sets of latents and targets. ``fold`` None: every split is the whole file."""

    def __init__(
        self,
        latent_file: str | Path,
        phenotypes: Mapping[str, Any],
        fold: Fold | None = None,
        task: str = "regression",
        batch_size: int = 100,
        num_workers: int = 0,
        nbatch_prefetch: int = 2,
        merge_train_val: bool = False,
        fold_csv: Path | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} is invalid; expected a positive integer")
        self.latent_file = Path(latent_file)
        self.fold, self.fold_csv = fold, fold_csv
        self.batch_size, self.num_workers, self.nbatch_prefetch = batch_size, num_workers, nbatch_prefetch
        self.merge_train_val = merge_train_val
        self.table = self._joined(phenotypes, task)
        self.latent_dim = len(self._z_columns)
        fit_ids = None if fold is None else _fold_ints(fold.train, "train", fold_csv)
        train = self._rows(fit_ids, "train")
        values = train[list(self.targets.columns)].to_numpy(np.float64) if task == "regression" else None
        self.normaliser = LatentNormaliser.fit(train[self._z_columns].to_numpy(np.float64), values)
        self.datasets: dict[str, LatentDataset] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, cfg: RunConfig, latent_file: str | Path, merge_train_val: bool) -> LatentDataModule:
        """Build from the run configuration (``DS_phenotypes``, ``datadir``/``foldCSV``/``foldID``, loader options,
        ``latent_task``) and ``RunPaths.latent_file``; checks ``--in_channels`` against the file's L."""
        data, run = cfg.data, cfg.run
        phenotypes = data.dataset.get("phenotypes")
        if not isinstance(phenotypes, Mapping) or "path" not in phenotypes or "cols" not in phenotypes:
            raise ConfigError(
                f"DS_phenotypes in {run.datajson_path} is {phenotypes!r}; "
                "taskID 2 expects {'path': <TSV>, 'cols': 'col1,col2'}"
            )
        fold_csv = Path(data.datadir) / str(data.foldCSV)
        given = fold_csv_given(data.foldCSV)
        dm = cls(
            latent_file,
            phenotypes,
            read_folds(fold_csv, data.foldID) if given else None,
            task=cfg.latent.latent_task,
            batch_size=run.batch_size,
            num_workers=run.num_workers,
            nbatch_prefetch=run.nbatch_prefetch or 2,
            merge_train_val=merge_train_val,
            fold_csv=fold_csv if given else None,
        )
        in_channels = cfg.model.in_channels
        if in_channels != dm.latent_dim:
            raise ConfigError(
                f"--in_channels {in_channels} does not match latent length L={dm.latent_dim} of {dm.latent_file}; "
                f"set --in_channels {dm.latent_dim}"
            )
        return dm

    def engine_hparams(self) -> dict[str, Any]:
        """What the engine needs to build its head, to be merged into the hparams before ``build_engine``."""
        return {
            "latent_task": self.targets.task,
            "n_phenotypes": len(self.targets.columns),
            "latent_targets": list(self.targets.columns),
            "latent_classes": [_plain(c) for c in self.targets.classes],
            "latent_target_mean": [float(v) for v in self.normaliser.target_mean],
            "latent_target_std": [float(v) for v in self.normaliser.target_std],
        }

    def _joined(self, phenotypes: Mapping[str, Any], task: str) -> pd.DataFrame:
        cols = phenotypes["cols"]
        columns = [c.strip() for c in cols.split(",") if c.strip()] if isinstance(cols, str) else [str(c) for c in cols]
        LatentTargets.check(task, columns)  # before any file is read
        latents = emb_table(self.latent_file)
        clash = [c for c in columns if c in latents.columns]
        if clash:
            raise DataError(f"phenotype column(s) {', '.join(clash)} clash with emb.h5 table columns; rename them")
        table = read_table(phenotypes["path"], columns)
        if table.index.has_duplicates:
            dup = int(table.index[table.index.duplicated()][0])
            raise DataError(f"phenotype table {phenotypes['path']}: subject {dup} appears twice; expected unique IDs")
        joined = latents.merge(table, left_on="subID", right_index=True, how="inner")
        missing = joined[columns].isna().any(axis=1)
        if missing.any():
            log.warning("%d series dropped: missing phenotype values in %s", int(missing.sum()), phenotypes["path"])
            joined = joined.loc[~missing]
        if joined.empty:
            raise DataError(
                f"no subject of {self.latent_file} has phenotypes in {phenotypes['path']}; "
                "expected overlapping subject IDs (FID / f.eid)"
            )
        classes: tuple[Any, ...] = ()
        if task == "regression":
            for col in columns:
                if not pd.api.types.is_numeric_dtype(joined[col]):
                    example = joined[col].iloc[0]
                    raise DataError(
                        f"phenotype table {phenotypes['path']}: column {col} holds {example!r}; regression expects "
                        "numbers (use latent_task classification for categories)"
                    )
        else:
            classes = tuple(np.unique(joined[columns[0]].to_numpy()).tolist())
            if len(classes) < 2:
                raise DataError(
                    f"phenotype column {columns[0]} has {len(classes)} distinct value(s); classification needs >= 2"
                )
        self.targets = LatentTargets(task, tuple(columns), classes)
        self._z_columns = latent_columns(latents)
        return joined.reset_index(drop=True)

    # ------------------------------------------------------------------ splits
    def split_ids(self, split: str) -> set[int] | None:
        """Subject IDs of ``split`` (train merges val when ``merge_train_val``); None = the whole file (also for
        ``predict``)."""
        if self.fold is None or split == "predict":
            return None
        ids = self.fold.split(split)
        if split == "train" and self.merge_train_val:
            ids = ids + self.fold.val
        return _fold_ints(ids, split, self.fold_csv)

    def _rows(self, ids: set[int] | None, split: str) -> pd.DataFrame:
        rows = self.table if ids is None else self.table.loc[self.table["subID"].isin(ids)]
        if rows.empty:
            raise DataError(
                f"the {split} split of fold CSV {self.fold_csv} has no subject with both a latent in "
                f"{self.latent_file} and phenotypes; expected at least one"
            )
        return rows

    def _dataset(self, split: str) -> LatentDataset:
        rows = self._rows(self.split_ids(split), split)
        latents = self.normaliser.latents(rows[self._z_columns].to_numpy(np.float64))
        values = rows[list(self.targets.columns)].to_numpy()
        if self.targets.task == "classification":
            lookup = {c: i for i, c in enumerate(self.targets.classes)}
            targets = np.array([lookup[v] for v in values[:, 0].tolist()], dtype=np.int64)
        else:
            targets = self.normaliser.targets(values.astype(np.float64))
        return LatentDataset(rows[["subID", "fieldID", "instanceID", "data_tag"]], latents, targets)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets of ``stage`` (fit, validate, test, predict)."""
        if stage in ("fit", None):
            self.datasets["train"] = self._dataset("train")
        if stage in ("fit", "validate", None) and not self.merge_train_val:
            self.datasets["val"] = self._dataset("val")
        if stage in ("test", None):
            self.datasets["test"] = self._dataset("test")
        if stage == "predict":
            self.datasets["predict"] = self._dataset("predict")

    # ------------------------------------------------------------------ loaders
    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.datasets:
            raise ConfigError(f"the {split} latent dataset is not set up; call setup() with the matching stage first")
        dataset = self.datasets[split]
        drop_last = train and len(dataset) >= self.batch_size
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=drop_last,
            num_workers=self.num_workers,
            prefetch_factor=self.nbatch_prefetch if self.num_workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader | list:
        """The validation loader; an empty list (no validation) when train and val are merged."""
        return [] if self.merge_train_val else self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", False)


def _plain(value: Any) -> Any:
    """A class value as a YAML/checkpoint-safe scalar (numpy scalars → Python)."""
    return value.item() if hasattr(value, "item") else value
