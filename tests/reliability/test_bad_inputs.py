"""Bad inputs end with one ``imlatent: error:`` line naming the culprit, no traceback and nothing left behind.

One table, ``CASES``: each row builds a broken input in ``tmp_path`` (a data file, a fold CSV, a YAML, a JSON or a
command-line value) and runs the executor in-process through :func:`Engineering.errors.run_guarded`, as the
``Executors/main_*.py`` scripts do. ``expect`` is ``"error"`` for inputs that must be refused, or ``"ok"`` for
inputs that are accepted by design (the reason is in ``note`` and in docs/reliability.md).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest

from Engineering.engines.runner import main
from Engineering.errors import run_guarded
from tests.reliability.conftest import FRAMES, common_args

OUTPUT_FILES = ("emb.h5", "recon.h5", "metrics.csv", "metrics.pkl")
DIFFAE_TINY = ["--model§latent_dim", "8", "--model§DiffAE§net_ch", "8", "--model§DiffAE§T_eval", "2"]


@dataclass(frozen=True)
class Case:
    """One bad input: ``build(data_dir, tmp)`` breaks the copied data and returns extra argv."""

    id: str
    build: Callable[[Path, Path], list[str]]
    names: tuple[str, ...]  # substrings the error line must contain (file, key or value)
    script: str = "recon"
    expect: str = "error"
    base: list[str] = field(default_factory=lambda: ["--modelID", "-1", "--num_epochs", "1", "--run_mode", "3"])
    note: str = ""


# ------------------------------------------------------------------------------------------ builders


def _args(*argv: str) -> Callable[[Path, Path], list[str]]:
    return lambda data, tmp: list(argv)


def _rewrite_h5(fn: Callable[[str, np.ndarray, dict], tuple[np.ndarray, dict] | None], only_first: bool = True):
    """Rewrite the series of data.h5 through ``fn(name, array, attrs)`` (None drops nothing, keeps as is)."""

    def build(data: Path, tmp: Path) -> list[str]:
        src = data / "data.h5"
        items: list[tuple[str, np.ndarray, dict]] = []
        with h5py.File(src, "r") as f:
            f.visititems(lambda n, o: items.append((n, o[()], dict(o.attrs))) if isinstance(o, h5py.Dataset) else None)
        src.unlink()
        with h5py.File(src, "w") as f:
            for i, (name, arr, attrs) in enumerate(items):
                out = fn(name, arr, attrs) if (i == 0 or not only_first) else None
                if out is not None:
                    name, arr, attrs = out if len(out) == 3 else (name, *out)
                ds = f.create_dataset(name, data=arr)
                ds.attrs.update(attrs)
        return []

    return build


def _bytes(content: Callable[[bytes], bytes]) -> Callable[[Path, Path], list[str]]:
    def build(data: Path, tmp: Path) -> list[str]:
        path = data / "data.h5"
        path.write_bytes(content(path.read_bytes()))
        return []

    return build


def _folds(rows: list[dict[str, str]] | None = None, text: str | None = None) -> Callable[[Path, Path], list[str]]:
    def build(data: Path, tmp: Path) -> list[str]:
        if text is not None:
            (data / "folds.csv").write_text(text)
            return []
        header = list(rows[0])
        lines = [",".join(header)] + [",".join(json.dumps(r[h]) for h in header) for r in rows]
        (data / "folds.csv").write_text("\n".join(lines) + "\n")
        return []

    return build


def _fold_row(train: list[str], val: list[str], test: list[str]) -> dict[str, str]:
    return {"train": str(train), "val": str(val), "test": str(test)}


TRAIN = ["1000011", "1000066", "1000088", "1000033", "1000022"]


def _flatten_instance(name: str) -> str:
    """``pid/field/instance/series`` -> ``pid/field/series_instance`` (one level too few)."""
    pid, fid, instance, series = name.split("/")
    return f"{pid}/{fid}/{series}_{instance}"


def _json_file(edit: Callable[[dict], dict]) -> Callable[[Path, Path], list[str]]:
    def build(data: Path, tmp: Path) -> list[str]:
        js = json.loads(Path("Configs/demo/dataNpath_demo.json").read_text())
        path = tmp / "data.json"
        path.write_text(json.dumps(edit(js)))
        return ["--datajson_path", str(path)]

    return build


def _yaml_file(text: str) -> Callable[[Path, Path], list[str]]:
    def build(data: Path, tmp: Path) -> list[str]:
        path = tmp / "bad.yaml"
        path.write_text(text)
        return ["--configyml_path", str(path)]

    return build


def _drop(key: str) -> Callable[[dict], dict]:
    return lambda js: {k: v for k, v in js.items() if k != key}


def _cast(dtype: str, fill: float | None = None, where: str = "one") -> Callable:
    def fn(name: str, arr: np.ndarray, attrs: dict):
        out = arr.astype(dtype)
        if fill is not None:
            if where == "one":
                out.flat[5] = fill
            else:
                out[...] = fill
        return out, attrs

    return fn


# ------------------------------------------------------------------------------------------ the table

CASES = [
    # --- the HDF5 data file
    Case("empty_h5", _bytes(lambda b: b""), ("data.h5",)),
    Case("truncated_h5", _bytes(lambda b: b[: len(b) // 3]), ("data.h5",)),
    Case("not_hdf5", _bytes(lambda b: b"subject,value\n1,2\n"), ("data.h5",)),
    Case("missing_h5", lambda d, t: (d / "data.h5").unlink() or [], ("data.h5",)),
    Case(
        "layout_depth_3", _rewrite_h5(lambda n, a, at: (_flatten_instance(n), a, at), False), ("data.h5",)
    ),  # fmt: skip
    Case("dims_3d_not_5d", _rewrite_h5(lambda n, a, at: (a[0, :, 0], at)), ("data.h5", "1000011")),
    Case(
        "complex_not_declared",
        _rewrite_h5(_cast("complex64"), False),
        ("data.h5", "1000011", "is_complexDS is false"),
        note="complex data would reach a real network (complex latents): refused; more in tests/data/test_bad_data.py",
    ),  # fmt: skip
    Case("nan_voxels", _rewrite_h5(_cast("float32", np.nan)), ("1000011", "NaN", "data.h5")),
    Case("inf_voxels", _rewrite_h5(_cast("float32", np.inf)), ("1000011", "inf")),
    Case(
        "zero_variance_volume",
        _rewrite_h5(_cast("float32", 7.0, where="all")),
        ("1000011",),
        expect="ok",
        note="per-sample min-max of a constant volume gives zeros (eps in the denominator): warned, not refused",
    ),
    Case(
        "min_equals_max_attrs",
        _rewrite_h5(lambda n, a, at: (a, {**at, "min_val": 5, "max_val": 5})),
        (),
        expect="ok",
        note="the recon default divbymaxvol divides by max_val=5: a valid scale; minmaxvol (a zero divisor) is "
        "refused unless the series is flat (tests/data/test_bad_data.py)",
    ),
    Case(
        "missing_minmax_attrs",
        _rewrite_h5(lambda n, a, at: (a, {k: v for k, v in at.items() if k not in ("min_val", "max_val")}), False),
        (),
        expect="ok",
        note="absent on every series: the volumetric normalisations fall back to per-sample statistics, with a "
        "warning; absent on some only is an error (tests/data/test_bad_data.py)",
    ),  # fmt: skip
    # --- the fold CSV
    Case(
        "folds_unknown_ids",
        _folds([_fold_row(["9999991", "9999992"], ["9999993"], ["9999994"])]),
        ("data.h5", "train split"),
    ),  # fmt: skip
    Case(
        "folds_duplicate_ids",
        _folds([_fold_row(TRAIN + ["1000011"], ["1000077"], ["1000055", "1000044"])]),
        ("folds.csv", "1000011"),
    ),  # fmt: skip
    Case(
        "folds_overlapping_splits",
        _folds([_fold_row(TRAIN, ["1000077", "1000011"], ["1000055", "1000044"])]),
        ("folds.csv", "1000011"),
    ),  # fmt: skip
    Case(
        "folds_empty_split",
        _folds([_fold_row(TRAIN, [], ["1000055", "1000044"])]),
        ("data.h5", "val split"),
        base=["--modelID", "-1", "--num_epochs", "1", "--run_mode", "1"],
    ),  # fmt: skip
    Case("folds_missing_column", _folds(text="train,test\n\"['1000011']\",\"['1000055']\"\n"), ("folds.csv", "val")),
    Case("folds_fold_out_of_range", _args("--foldID", "7"), ("folds.csv", "7")),
    Case("folds_missing_file", lambda d, t: (d / "folds.csv").unlink() or [], ("folds.csv",)),
    # --- model and YAML configuration
    Case("unknown_pythae_model", _args("--modelID", "0", "--pythae_model", "no_such_vae"), ("no_such_vae",)),
    Case("unknown_diffae_yaml_key", _args(*DIFFAE_TINY, "--model§DiffAE§net_chh", "8"), ("net_chh",), script="diffae"),
    Case("shape_not_divisible", _args(*DIFFAE_TINY, "--input_shape", f"{FRAMES},30,30"), ("30",), script="diffae"),
    Case(
        "latent_dim_zero_diffae",
        _args("--model§latent_dim", "0", "--model§DiffAE§net_ch", "8"),
        ("latent_dim",),
        script="diffae",
    ),  # fmt: skip
    Case(
        "latent_dim_negative_diffae",
        _args("--model§latent_dim", "-4", "--model§DiffAE§net_ch", "8"),
        ("latent_dim", "-4"),
        script="diffae",
    ),  # fmt: skip
    Case(
        "pythae_shape_not_multiple_of_8",
        _args("--modelID", "0", "--pythae_model", "custom_factor_vae"),
        ("input_shape", "multiple of 8"),
    ),  # fmt: skip
    Case("yaml_unknown_nan_policy", _args("--training§nan_policy", "ignore"), ("nan_policy", "ignore")),
    Case("yaml_syntax_error", _yaml_file("model: [unclosed\n"), ("bad.yaml",)),
    Case("missing_config_file", _args("--configyml_path", "nowhere/config.yaml"), ("nowhere/config.yaml",)),
    # --- data JSON
    Case("missing_data_json", _args("--datajson_path", "nowhere/data.json"), ("nowhere/data.json",)),
    Case("data_json_missing_key", _json_file(_drop("foldCSV")), ("foldCSV", "data.json")),
    Case(
        "data_json_syntax_error",
        lambda d, t: (t / "d.json").write_text("{oops") and ["--datajson_path", str(t / "d.json")],
        ("d.json",),
    ),  # fmt: skip
    # --- command line
    Case("malformed_override", _args("--model§§latent_dim", "8"), ("model§§latent_dim",)),
    Case("bad_input_shape", _args("--input_shape", "6,a,32"), ("input_shape", "6,a,32")),
    Case("bad_ampmode", _args("--ampmode", "17"), ("17",)),
    Case("deepspeed_on_cpu", _args("--training_strategy", "deepspeed"), ("deepspeed",)),
    Case("unknown_optimiser", _args("--optimiserID", "99"), ("--optimiserID", "99")),
    Case("unknown_lr_decay", _args("--lr_decay_type", "7"), ("--lr_decay_type", "7")),
    Case("task_of_other_script", _args("--taskID", "1"), ("--taskID",)),
    Case("unknown_model_id", _args("--modelID", "5"), ("--modelID", "5")),
]


@pytest.fixture(autouse=True)
def _fresh_log_handlers():
    """The executor binds its console handler to the sys.stderr of its first call: rebind it per test (capsys)."""
    root = logging.getLogger("imlatent")
    saved = list(root.handlers)
    root.handlers = []
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers = saved


@pytest.fixture
def broken(rel_demo: Path, tmp_path: Path) -> Path:
    data = tmp_path / "demo_data"
    shutil.copytree(rel_demo / "demo_data", data)
    return data


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, broken: Path, tmp_path: Path, repo_root: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(repo_root)
    results = tmp_path / "results"
    argv = common_args(tmp_path, results, broken) + case.base + case.build(broken, tmp_path)
    capsys.readouterr()
    rc = run_guarded(lambda a: main(case.script, a), argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("imlatent: error:")]
    if case.expect == "ok":
        assert rc == 0 and not lines, err[-2000:]
        return
    assert rc != 0, f"accepted: {case.id}"
    assert len(lines) == 1, err[-2000:]
    for name in case.names:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    written = [p.name for p in results.rglob("*") if p.name in OUTPUT_FILES] if results.exists() else []
    assert not written
    # nothing else either: no run folder skeleton, no TensorBoard folder (the run created them, so it removed them)
    assert not results.exists() and not results.with_name("results_tb").exists()


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
