"""Command-line arguments of a tiny CPU run on the synthetic demo data, shared by the end-to-end tests."""

from __future__ import annotations

from pathlib import Path


def demo_run_args(datadir: Path, results: Path, frames: int, size: int, *, tensorboard: bool = True) -> list[str]:
    """A run of the demo data JSON pointed at ``datadir`` (written by write_demo_dataset) and ``results``.

    Input (frames, size, size), batch 2 without accumulation, every batch used, metrics in-process.
    """
    return [
        "--datajson_path", "Configs/demo/dataNpath_demo.json",
        f"--json§datadir={datadir}", f"--json§save_path={results}",
        *([f"--json§tblog_path={results.with_name(results.name + '_tb')}"] if tensorboard else ["--no-tbactive"]),
        f"--json§DS_sanity_filters§dim1={frames}",
        "--accelerator", "cpu", "--num_workers", "0", "--ampmode", "32", "--input_shape", f"{frames},{size},{size}",
        "--batch_size", "2", "--effective_batch_size", "2", "--n_train_batches", "1.0", "--n_val_batches", "1.0",
        "--eval§n_calc_processes", "0",
    ]  # fmt: skip
