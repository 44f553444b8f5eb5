"""``report.py``: one self-contained HTML page about a finished run.

Sections: the run, its training curves (TensorBoard event files, or a Lightning ``metrics.csv``), the distribution of
its test metrics, labelled reconstruction panels, per-latent histograms and the latent correlation matrix, a 2-D PCA
map of the latents (coloured by a phenotype when one is given) and, for a DiffAE run with ``--direction``, the
manipulation grid of one subject. A section whose inputs are missing says so instead of failing; bad options
are refused before anything is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from Engineering.configuration.run_config import RunConfig
from Engineering.data.sidecars import read_table
from Engineering.engines.diffae_inference import load_diffae_run, load_subject, read_series, stored_run_config
from Engineering.engines.directions import DirectionSpec, reference_latents, resolve_direction, run_emb_file
from Engineering.engines.latent_views import manipulation_figure
from Engineering.errors import ConfigError, DataError
from Engineering.outputs import report_figures as figures
from Engineering.outputs.latent_figures import pick_frames, staged_folder
from Engineering.outputs.latent_tables import emb_rows
from Engineering.outputs.report_html import Section, render_png, write_report_files

log = logging.getLogger("imlatent")

MAX_PANELS = 4
METRIC_COLUMNS = ("SSIM", "MSSSIM", "NRMSE", "PSNR", "UQI", "SDofDiff")


@dataclass
class ReportRequest:
    """What ``report.py`` was asked for (see its ``--help``)."""

    run_dir: Path
    output: str | None = None
    out: Path | None = None
    phenotype: tuple[str, str] | None = None
    direction: DirectionSpec | None = None
    subject: str | None = None
    alphas: list[float] = field(default_factory=lambda: [-2.0, -1.0, 0.0, 1.0, 2.0])
    ddim_steps: int | None = None
    tblog: Path | None = None
    load_best: bool = False
    device: str = "cpu"
    progress: bool = True


# ------------------------------------------------------------------------------------------------ inputs


def output_folder(run_dir: Path, name: str | None) -> Path:
    """The run's test output folder: ``name`` (e.g. ``Output_fullDS``), else ``Output``, else the first Output*."""
    if name:
        folder = run_dir / name
        if not folder.is_dir():
            names = ", ".join(sorted(p.name for p in run_dir.glob("Output*"))) or "none"
            raise ConfigError(f"--output {name}: no such folder in {run_dir}; found: {names}")
        return folder
    found = sorted(p for p in run_dir.glob("Output*") if p.is_dir())
    if not found:
        raise DataError(f"run {run_dir} has no Output* folder; run its test stage first (--run_mode 2)")
    return run_dir / "Output" if (run_dir / "Output").is_dir() else found[0]


def training_scalars(run_dir: Path, cfg: RunConfig, tblog: Path | None) -> tuple[dict[str, pd.DataFrame], str]:
    """Logged scalars per tag (columns step, value) and where they were read; empty when nothing was logged."""
    roots = [tblog] if tblog else [Path(cfg.data.tblog_path or ".") / run_dir.name, run_dir]
    for root in (r for r in roots if r.is_dir()):
        events = sorted(root.rglob("events.out.tfevents*"))
        if events:
            return _tensorboard_scalars(events), str(root)
        csvs = sorted(root.rglob("metrics.csv"))
        csvs = [c for c in csvs if "Output" not in c.parent.name]  # the test metrics table is not a training log
        if csvs:
            return _csv_scalars(csvs), str(root)
    return {}, " or ".join(str(r) for r in roots)


def _tensorboard_scalars(events: list[Path]) -> dict[str, pd.DataFrame]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for path in events:  # one file per invocation (resumes add files): join them by tag
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {t: pd.DataFrame(sorted(v), columns=["step", "value"]) for t, v in out.items() if _training_tag(t)}


def _training_tag(tag: str) -> bool:
    """Not Lightning's step counter, its placeholder hyper-parameter metric, or a test-stage score."""
    return tag not in ("epoch", "hp_metric") and not tag.startswith("test_")


def _csv_scalars(csvs: list[Path]) -> dict[str, pd.DataFrame]:
    table = pd.concat([pd.read_csv(c) for c in csvs], ignore_index=True)
    if "step" not in table.columns:
        return {}
    return {
        c: table[["step", c]].dropna().rename(columns={c: "value"})
        for c in table.columns
        if c != "step" and _training_tag(c) and table[c].notna().any()
    }


def _latent_file(run_dir: Path, output: Path, chosen: str | None) -> Path:
    """The latents shown: the chosen output folder's, else the run's fullest emb.h5 (most points on the map)."""
    if chosen:
        return output / "emb.h5"
    try:
        return run_emb_file(run_dir)
    except DataError:
        return output / "emb.h5"


def _recon_arrays(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if path.is_file():
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _phenotype_values(table: pd.DataFrame, phenotype: tuple[str, str] | None) -> np.ndarray | None:
    if phenotype is None:
        return None
    values = pd.to_numeric(read_table(Path(phenotype[0]), [phenotype[1]])[phenotype[1]], errors="coerce")
    return table["subID"].map(values).to_numpy(np.float64)


# ------------------------------------------------------------------------------------------------ sections


def _run_section(run_dir: Path, cfg: RunConfig, output: Path, latents: pd.DataFrame | None) -> Section:
    ckpts = (
        sorted(p.name for p in (run_dir / "Checkpoints").glob("*.ckpt")) if (run_dir / "Checkpoints").is_dir() else []
    )
    facts = {
        "run": run_dir.name,
        "executor": f"main_{cfg.script}.py" if cfg.script != "diffae" else "main_diffAE.py",
        "input shape": cfg.data.input_shape,
        "3D": str(cfg.model.is_3d),
        "latent size": str(cfg.model.latent_dim if cfg.model.latent_dim is not None else "?"),
        "epochs asked": str(cfg.run.num_epochs),
        "checkpoints": ", ".join(ckpts) or "none",
        "test outputs": output.name,
        "latent vectors": f"{len(latents)} of {latents['key'].nunique()} series"
        if latents is not None
        else "no emb.h5",
    }
    table = pd.DataFrame({"": list(facts), "value": list(facts.values())})
    return Section("run", "Run", tables=[table])


def _curves_section(scalars: dict[str, pd.DataFrame], where: str) -> Section:
    section = Section("training", "Training curves")
    if not scalars:
        section.notes.append(f"No logged training metrics found in {where} (TensorBoard event files or metrics.csv).")
        return section
    section.paragraphs.append(f"Scalars logged during training, read from {where}.")
    section.figures.append(render_png(figures.training_curves(scalars), "training_curves", "Logged scalars per step"))
    return section


def _metrics_section(output: Path) -> Section:
    section = Section("metrics", "Test metrics")
    path = output / "metrics.csv"
    if not path.is_file():
        section.notes.append(f"No {path} (the test stage writes it unless --test_emb_only).")
        return section
    metrics = pd.read_csv(path)
    columns = [c for c in METRIC_COLUMNS if c in metrics.columns and not (metrics[c] == -1).all()]
    if not columns:
        section.notes.append(f"{path} holds no metric column.")
        return section
    summary = metrics[columns].describe(percentiles=[0.25, 0.5, 0.75]).T.reset_index()
    section.paragraphs.append(f"One row per 2D image (per depth slice in 3D) of {path.name}: {len(metrics)} rows.")
    section.tables.append(summary.rename(columns={"index": "metric"})[["metric", "count", "mean", "25%", "50%", "75%"]])
    section.figures.append(render_png(figures.metric_distributions(metrics, columns), "test_metrics", "Histograms"))
    return section


def _panel_frames(cfg: RunConfig, key: str, dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, reconstructions) display frames (F, H, W) of one recon.h5 key."""
    series = read_series(cfg, key.split("/")[0], key)
    inputs = series.frames((series.x + 1) / 2)
    recon = np.stack([dense[i, j, k] for i, j, k in series.indices])  # (N, *sample), channel squeezed
    if recon.ndim == inputs.ndim + 2:  # several channels kept: show channel 0 as the input is shown
        recon = recon[:, 0]
    return inputs, recon[0] if recon.ndim == 4 else recon


def _recon_section(cfg: RunConfig, output: Path) -> Section:
    section = Section("recon", "Reconstructions")
    recon = _recon_arrays(output / "recon.h5")
    if not recon:
        section.notes.append(f"No reconstructions in {output / 'recon.h5'} (see --n_save_recon_subs).")
        return section
    section.paragraphs.append(
        f"{min(len(recon), MAX_PANELS)} of the {len(recon)} series in recon.h5: input, reconstruction and their "
        "absolute difference (own scale), in the model's [0, 1] intensity space."
    )
    for key in sorted(recon)[:MAX_PANELS]:
        try:
            inputs, recons = _panel_frames(cfg, key, recon[key])
        except (DataError, ConfigError, OSError) as err:
            section.notes.append(f"{key}: input not readable ({err}); panel skipped.")
            continue
        frames = pick_frames(inputs.shape[0], None, 5)
        fig = figures.recon_panel(inputs, recons, frames, key)
        section.figures.append(render_png(fig, f"recon_{len(section.figures)}", key))
    return section


def _latent_sections(table: pd.DataFrame | None, emb: str, req: ReportRequest) -> list[Section]:
    hist, pca = Section("latents", "Latents"), Section("map", "Latent map")
    if table is None or len(table) < 2:
        for section in (hist, pca):
            section.notes.append(f"Fewer than two latent vectors in {emb}.")
        return [hist, pca]
    latents = table[[c for c in table.columns if c not in ("subID", "key")]].to_numpy(np.float64)
    hist.paragraphs.append(f"{latents.shape[0]} latent vectors of length {latents.shape[1]} from {emb}.")
    hist.figures.append(render_png(figures.latent_histograms(latents), "latent_histograms", "Per-latent spread"))
    hist.figures.append(render_png(figures.correlation_matrix(latents), "latent_correlation", "Latent correlations"))
    colour = _phenotype_values(table, req.phenotype)
    label = req.phenotype[1] if req.phenotype else ""
    caption = f"PCA map coloured by {label}" if label else "PCA map (give --phenotype TABLE COLUMN to colour it)"
    pca.figures.append(render_png(figures.pca_map(latents, colour, label), "latent_pca", caption))
    if latents.shape[0] < 10:
        pca.notes.append(f"Only {latents.shape[0]} latent vectors: the map shows little; test on more subjects.")
    return [hist, pca]


def _manipulation_section(req: ReportRequest, recon_keys: list[str]) -> Section:
    section = Section("manipulation", "Manipulation")
    assert req.direction is not None
    run = load_diffae_run(req.run_dir, req.load_best, req.device)
    direction = resolve_direction(req.direction, reference_latents(run.run_dir))
    subject = req.subject or (recon_keys[0].split("/")[0] if recon_keys else None)
    if subject is None:
        raise ConfigError("--direction needs --subject (the run has no recon.h5 to pick one from)")
    series = load_subject(run, subject)
    fig = manipulation_figure(run, series, direction, req.alphas, None, req.ddim_steps, req.progress)
    steps = req.ddim_steps or run.decoding_steps
    section.paragraphs.append(
        f"Subject {subject} moved along {direction.label} (α in SDs of the latents' projection, σ = "
        f"{direction.sd:.3g}), decoded with its own inverted x_T ({steps} DDIM steps)."
    )
    section.figures.append(render_png(fig, "manipulation", f"{subject}: {direction.label}"))
    return section


def write_report(req: ReportRequest) -> Path:
    """Check the options, build every section, write ``report.html`` (+ PNGs) into ``req.out``; returns the page."""
    run_dir = Path(req.run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"--run_dir {run_dir} is not a folder (expected <save_path>/<run_name>)")
    resolved = stored_run_config(run_dir)
    if req.direction is not None and resolved.script != "diffae":
        raise ConfigError(f"--direction needs a DiffAE run; {run_dir} is a {resolved.script} run")
    if req.phenotype is not None:
        read_table(Path(req.phenotype[0]), [req.phenotype[1]])  # a missing table or column fails before any work
    output = output_folder(run_dir, req.output)
    emb = _latent_file(run_dir, output, req.output)
    table = emb_rows(emb) if emb.is_file() else None
    cfg = resolved.typed()
    scalars, where = training_scalars(run_dir, cfg, req.tblog)
    sections = [_run_section(run_dir, cfg, output, table), _curves_section(scalars, where)]
    sections += [_metrics_section(output), _recon_section(cfg, output), *_latent_sections(table, str(emb), req)]
    if req.direction is not None:
        sections.append(_manipulation_section(req, sorted(_recon_arrays(output / "recon.h5"))))
    out = Path(req.out) if req.out else run_dir / "Report"
    with staged_folder(out) as stage:
        write_report_files(stage, "report", f"ImLatent run report: {run_dir.name}", sections)
    return out / "report.html"


__all__ = ["ReportRequest", "output_folder", "training_scalars", "write_report"]
