"""Bad data (issue 14 items 10-12): crafted HDF5 files through the real executor entry and through validate_h5.

Each row of ``CASES`` edits a copy of a tiny demo file. An ``error`` row must end the executor with exactly one
``imlatent: error:`` line naming the file, the series key and what was expected, a non-zero exit, no run folder and
no index cache; validate_h5, given the same executor command line after ``--``, must report the same line. A
``warning`` row runs to the end (exit 0), and the run and validate_h5 print the same warning.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from Engineering.data.checks import Expectation, check_selected, series_findings
from Engineering.data.demo import write_demo_dataset, write_series_file
from Engineering.data.folds import Fold, write_fold_csv
from Engineering.engines.runner import main
from Engineering.errors import run_guarded
from tests.demo_args import demo_run_args

FRAMES, SIZE = 4, 16
SERIES = "1000011/20208/2_0/primary_LAX_4Ch_transverse_0"  # the first series the demo JSON selects
TWO_CHAMBER = "1000066/20208/2_0/primary_LAX_2Ch_sagittal_0"
RECON = ["--modelID", "-1", "--num_epochs", "1", "--run_mode", "3", "--n_save_recon_subs", "0"]
WHOLE_FILE = ["--json§foldCSV", "0"]


def _replace(data: np.ndarray | None = None, **attrs: object) -> Callable[[Path], None]:
    """Rewrite SERIES with ``data`` (None keeps it) and its attributes updated by ``attrs`` (None deletes one)."""

    def edit(h5: Path) -> None:
        with h5py.File(h5, "a") as f:
            old, kept = f[SERIES][()], dict(f[SERIES].attrs)
            del f[SERIES]
            ds = f.create_dataset(SERIES, data=old if data is None else data)
            kept.update(attrs)
            ds.attrs.update({k: v for k, v in kept.items() if v is not None})

    return edit


def _bytes(content: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    return lambda h5: h5.write_bytes(content(h5.read_bytes()))


def _as_group(h5: Path) -> None:
    with h5py.File(h5, "a") as f:
        del f[SERIES]
        f.create_group(SERIES).create_dataset("data", data=np.ones((1, FRAMES, 1, SIZE, SIZE), np.uint16))


def _shape(*shape: int, dtype: str = "uint16") -> np.ndarray:
    return np.full(shape, 7, dtype=dtype)


def _secret(h5: Path) -> Path:
    """A local file the crafted data file points at: its bytes must never reach a run."""
    secret = h5.parent / "secret.bin"
    secret.write_bytes(np.arange(FRAMES * SIZE * SIZE, dtype=np.uint16).tobytes())
    return secret


def _external(h5: Path) -> None:
    with h5py.File(h5, "a") as f:
        attrs = dict(f[SERIES].attrs)
        del f[SERIES]
        ds = f.create_dataset(
            SERIES,
            shape=(1, FRAMES, 1, SIZE, SIZE),
            dtype="uint16",
            external=[(str(_secret(h5)), 0, h5py.h5f.UNLIMITED)],
        )
        ds.attrs.update(attrs)


def _virtual(h5: Path) -> None:
    other = h5.parent / "other.h5"
    with h5py.File(other, "w") as o:
        o["x"] = np.ones((1, FRAMES, 1, SIZE, SIZE), np.uint16)
    layout = h5py.VirtualLayout(shape=(1, FRAMES, 1, SIZE, SIZE), dtype="uint16")
    layout[...] = h5py.VirtualSource(str(other), "x", shape=(1, FRAMES, 1, SIZE, SIZE))
    with h5py.File(h5, "a") as f:
        attrs = dict(f[SERIES].attrs)
        del f[SERIES]
        f.create_virtual_dataset(SERIES, layout).attrs.update(attrs)


def _drop_minmax_everywhere(h5: Path) -> None:
    with h5py.File(h5, "a") as f:
        series: list[h5py.Dataset] = []
        f.visititems(lambda n, o: series.append(o) if isinstance(o, h5py.Dataset) else None)
        for ds in series:
            del ds.attrs["min_val"], ds.attrs["max_val"]


@dataclass(frozen=True)
class Case:
    """``expect``: error (validate exit 1), refused (the file cannot be opened: validate exit 2) or warning."""

    id: str
    edit: Callable[[Path], None]
    expect: str
    names: tuple[str, ...]  # besides the file, what the line must contain (series key, expected value)
    argv: tuple[str, ...] = tuple(WHOLE_FILE)
    script: str = "recon"


CASES = [
    # item 10: tracebacks before
    Case("empty_file", _bytes(lambda b: b""), "refused", ("cannot be opened as HDF5", "expected a complete HDF5 file")),
    Case("text_file", _bytes(lambda b: b"subject,value\n1,2\n"), "refused", ("cannot be opened as HDF5",)),
    Case("truncated_file", _bytes(lambda b: b[: len(b) // 3]), "refused", ("truncated", "expected a complete HDF5")),
    Case("nan_min_val", _replace(min_val=np.nan), "error", (SERIES, "min_val=nan", "expected a finite number")),
    Case("string_max_val", _replace(max_val="big"), "error", (SERIES, "max_val='big'", "expected one real number")),
    # item 11: silently accepted before
    Case(
        "zero_time_axis",
        _replace(_shape(1, 0, 1, SIZE, SIZE)),
        "error",
        (SERIES, "Time (axis 1) has length 0", "expected at least one element on every axis"),
        argv=(*WHOLE_FILE, "--json§DS_sanity_filters=None"),  # the demo's dim1 filter would skip it, rightly
    ),
    Case("zero_x_axis", _replace(_shape(1, FRAMES, 1, 0, SIZE)), "error", (SERIES, "X (axis 3) has length 0")),
    Case(
        "complex_declared_real",
        _replace(_shape(1, FRAMES, 1, SIZE, SIZE, dtype="complex64")),
        "error",
        (SERIES, "complex data (complex64) but is_complexDS is false", "expected real data"),
    ),
    Case(
        "complex_declared_real_diffae",
        _replace(_shape(1, FRAMES, 1, SIZE, SIZE, dtype="complex64")),
        "error",
        (SERIES, "is_complexDS is false"),
        script="diffae",
    ),
    Case(
        "min_equals_max_minmaxvol",
        _replace(min_val=5, max_val=5),
        "error",
        (SERIES, "min_val == max_val == 5.0", "divides by max_val - min_val"),
        argv=(*WHOLE_FILE, "--norm_type", "minmaxvol"),
    ),
    Case("string_dtype", _replace(np.full((1, FRAMES, 1, 2, 2), b"ab")), "error", (SERIES, "expected a numeric")),
    Case(
        "min_max_on_some_series_only",
        _replace(min_val=None, max_val=None),
        "error",
        ("have min_val/max_val but 1 do not", SERIES),
    ),
    # a crafted file reading other local files' bytes into the outputs
    Case("external_storage", _external, "error", (SERIES, "external file(s)", "secret.bin", "expected data inside")),
    Case("virtual_dataset", _virtual, "error", (SERIES, "is a virtual dataset", "expected data inside the file")),
    Case("bool_dataset", _replace(_shape(1, FRAMES, 1, SIZE, SIZE, dtype="bool")), "warning", (SERIES, "dtype bool")),
    Case("series_as_group", _as_group, "warning", (SERIES, "is a group, not a dataset; it is skipped")),
    Case(
        "min_max_absent_everywhere",
        _drop_minmax_everywhere,
        "warning",
        ("no selected series has min_val/max_val", "falls back to each sample's own minimum and maximum"),
    ),
    # item 12
    Case(
        "selection_absent_from_a_split",
        lambda h5: None,
        "warning",
        ("'primary_LAX_2Ch_sagittal' matches no series of the 1 patient(s) of the test split", "1 series of 1"),
        argv=("--json§DS_selected_primaries=['LAX_4Ch_transverse','LAX_2Ch_sagittal']",),
    ),
    Case(
        "selection_matches_nothing",
        lambda h5: None,
        "error",
        ("'primary_SAX' matches no series in the file", "series names present: primary_LAX_2Ch_sagittal_0"),
        argv=(*WHOLE_FILE, "--json§DS_selected_primaries=['LAX_4Ch_transverse','SAX']"),
    ),
]
WARNING_RUNS = {c.id for c in CASES if c.expect == "warning"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad_data")
    paths = write_demo_dataset(root / "demo_data", n_patients=6, frames=FRAMES, size=SIZE, n_folds=1, seed=3)
    # item 12: the 2-chamber series (patient 1000066) is in train, not in test
    ids = paths.patient_ids
    write_fold_csv(paths.datadir / "folds.csv", [Fold([ids[0], ids[5], ids[2]], [ids[3]], [ids[1]])])
    return paths.datadir


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
def tool(repo_root):
    spec = importlib.util.spec_from_file_location("validate_h5", repo_root / "Executors" / "validate_h5.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _executor_argv(data: Path, results: Path, case: Case) -> list[str]:
    fold = [f"--json§foldCSV={data / 'folds.csv'}"]
    return demo_run_args(data, results, FRAMES, SIZE, tensorboard=False) + fold + RECON + list(case.argv)


def _message(line: str) -> str:
    """The executor's line without its prefix and without the count of further problems."""
    return re.sub(r" \(and \d+ more problem\(s\).*$", "", line.removeprefix("imlatent: error: "))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_data(case: Case, demo: Path, tmp_path: Path, repo_root: Path, tool, monkeypatch, capsys) -> None:
    monkeypatch.chdir(repo_root)
    data = tmp_path / "demo_data"
    shutil.copytree(demo, data)
    case.edit(data / "data.h5")
    results = tmp_path / "results"
    argv = _executor_argv(data, results, case)
    capsys.readouterr()
    rc = run_guarded(lambda a: main(case.script, a), argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("imlatent: error:")]
    v_rc = run_guarded(tool, ["--json", "Configs/demo/dataNpath_demo.json", "--script", case.script, "--", *argv])
    v_out = capsys.readouterr()
    if case.expect == "warning":
        assert rc == 0 and not lines, err[-2000:]
        warned = [line for line in err.splitlines() if all(n in line for n in case.names)]
        assert warned, err[-3000:]
        assert v_rc == 0, v_out.out
        assert str(data / "data.h5") in warned[0] and _message(warned[0].split("WARNING ", 1)[-1]) in v_out.out
        return
    assert rc != 0 and len(lines) == 1, err[-2000:]
    for name in (str(data / "data.h5"), *case.names):
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    assert not results.exists(), "a failed run must leave no run folder"
    assert not (data / "data_processedmeta").exists(), "an index that failed its checks must not be cached"
    assert v_rc == (2 if case.expect == "refused" else 1)
    assert _message(lines[0]) in (v_out.err if case.expect == "refused" else v_out.out)


@pytest.mark.slow
@pytest.mark.parametrize("case_id", ["text_file", "zero_time_axis"])
def test_bad_data_subprocess(case_id: str, demo: Path, tmp_path: Path, repo_root: Path) -> None:
    """The executor and validate_h5 as real processes: one line on stderr, exit codes, nothing written."""
    case = next(c for c in CASES if c.id == case_id)
    data = tmp_path / "demo_data"
    shutil.copytree(demo, data)
    case.edit(data / "data.h5")
    results = tmp_path / "results"
    argv = _executor_argv(data, results, case)
    run = subprocess.run(
        [sys.executable, "Executors/main_recon.py", *argv], cwd=repo_root, capture_output=True, text=True
    )
    lines = [line for line in run.stderr.splitlines() if line.startswith("imlatent: error:")]
    assert run.returncode == 2 and len(lines) == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert str(data / "data.h5") in lines[0] and not results.exists()
    check = subprocess.run(
        [sys.executable, "Executors/validate_h5.py", "--json", "Configs/demo/dataNpath_demo.json", "--script", "recon",
         "--", *argv],
        cwd=repo_root, capture_output=True, text=True,
    )  # fmt: skip
    assert "Traceback" not in check.stderr
    assert check.returncode == (2 if case.expect == "refused" else 1)
    assert _message(lines[0]) in check.stdout + check.stderr


def test_table_covers_the_issue() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 15


# ------------------------------------------------------------------------------------------ severity rules


def _one(tmp_path: Path, data: np.ndarray, **attrs: object) -> Path:
    h5 = write_series_file(tmp_path / "s.h5", {SERIES: data}, minmax_attrs=False)
    with h5py.File(h5, "a") as f:
        f[SERIES].attrs.update(attrs)
    return h5


def _findings(h5: Path, expect: Expectation) -> list[tuple[bool, str]]:
    with h5py.File(h5, "r") as f:
        return [(x.error, x.message) for x in series_findings(h5, SERIES, f[SERIES], expect)]


USED = Expectation(fetch_minmax=True, norm_type="minmaxvol", is_complexDS=False)
ZSCORE = Expectation(fetch_minmax=True, norm_type="zscore", is_complexDS=False)
NOT_READ = Expectation(fetch_minmax=False, norm_type="minmax")


@pytest.mark.parametrize(
    ("attrs", "expect", "error"),
    [
        ({"min_val": np.nan, "max_val": 9}, USED, True),  # the normalisation would be NaN
        ({"min_val": np.nan, "max_val": 9}, ZSCORE, False),  # read but unused: the result is right
        ({"min_val": np.nan, "max_val": 9}, NOT_READ, False),
        ({"min_val": "low", "max_val": 9}, ZSCORE, True),  # float() of the reader fails whenever it is read
        ({"min_val": "low", "max_val": 9}, NOT_READ, False),
        ({"min_val": [1, 2], "max_val": 9}, USED, True),
        ({"min_val": 9, "max_val": 1}, USED, True),  # swapped: a negative divisor
        ({"min_val": 9, "max_val": 1}, ZSCORE, None),  # not used: no finding
    ],
)
def test_min_max_severity(tmp_path: Path, attrs: dict, expect: Expectation, error: bool | None) -> None:
    found = _findings(_one(tmp_path, np.arange(16, dtype=np.float32).reshape(1, 1, 1, 4, 4), **attrs), expect)
    assert [e for e, _ in found] == ([] if error is None else [error]), found


def test_zero_divisor_only_when_the_result_would_be_wrong(tmp_path: Path) -> None:
    flat = np.full((1, 2, 1, 4, 4), 5, np.uint16)
    assert _findings(_one(tmp_path, flat, min_val=5, max_val=5), USED) == []  # zeros, as for any flat series
    varied = flat.copy()
    varied[0, 0, 0, 0, 0] = 6
    ((error, text),) = _findings(_one(tmp_path, varied, min_val=5, max_val=5), USED)
    assert error and "min_val == max_val == 5.0 but voxels that differ from it" in text
    divbymax = Expectation(fetch_minmax=True, norm_type="divbymaxvol")
    assert _findings(_one(tmp_path, varied, min_val=5, max_val=5), divbymax) == []  # divides by 5: fine
    assert _findings(_one(tmp_path, np.zeros_like(flat), min_val=0, max_val=0), divbymax) == []
    ((error, text),) = _findings(_one(tmp_path, varied, min_val=0, max_val=0), divbymax)
    assert error and "max_val=0 but non-zero voxels" in text


def test_dtype_severity(tmp_path: Path) -> None:
    z = np.ones((1, 1, 1, 4, 4), np.complex64)
    assert _findings(_one(tmp_path, z), Expectation(is_complexDS=True)) == []
    assert _findings(_one(tmp_path, z), Expectation()) == []  # not known (a bare dataset): not checked
    assert [e for e, _ in _findings(_one(tmp_path, z), Expectation(is_complexDS=False))] == [True]
    ((error, text),) = _findings(_one(tmp_path, np.ones((1, 1, 1, 4, 4), bool)), USED)
    assert not error and "is it a mask?" in text


def test_min_max_presence(tmp_path: Path) -> None:
    arr = np.ones((1, 1, 1, 4, 4), np.uint16)
    keys = ["A/f/i/primary", "B/f/i/primary"]
    h5 = write_series_file(tmp_path / "p.h5", dict.fromkeys(keys, arr), minmax_attrs=False)
    assert check_selected(h5, keys, ZSCORE) == []  # none carries them: consistent batches, unused
    assert [x.error for x in check_selected(h5, keys, USED)] == [False]  # per-sample fallback, said out loud
    with h5py.File(h5, "a") as f:
        f[keys[0]].attrs.update(min_val=0, max_val=1)
    for expect in (ZSCORE, USED):  # a batch mixing both cannot be collated
        ((finding,),) = [check_selected(h5, keys, expect)]
        assert finding.error and "1 selected series have min_val/max_val but 1 do not" in finding.message
    assert check_selected(h5, keys, NOT_READ) == []
