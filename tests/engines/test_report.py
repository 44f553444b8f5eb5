"""report.py: one self-contained HTML page with every section and its figures, on tiny trained DiffAE runs."""

from __future__ import annotations

import base64
import importlib.util
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from Engineering.configuration.run_config import RunConfig
from Engineering.engines.run_report import training_scalars
from Engineering.errors import run_guarded
from Engineering.outputs.report_html import Figure, Section, render_html, write_report_files

SECTIONS = ["run", "training", "metrics", "recon", "latents", "map", "manipulation"]
IMG = re.compile(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def _executor():
    path = Path(__file__).resolve().parents[2] / "Executors" / "report.py"
    spec = importlib.util.spec_from_file_location("_exec_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png(width: int = 4) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((2, width), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_page_embeds_its_figures_escapes_text_and_links_each_section(tmp_path):
    sections = [
        Section("a", "First <b>", paragraphs=["x < y & z"], figures=[Figure("one", _png(), "cap 'q'")]),
        Section("b", "Second", notes=["nothing here"], tables=[pd.DataFrame({"k": ["<i>"], "v": [1.23456]})]),
    ]
    page = render_html("Title", sections)
    assert "First &lt;b&gt;" in page and "x &lt; y &amp; z" in page and "&lt;i&gt;" in page and "1.235" in page
    assert '<a href="#a">' in page and '<section id="b">' in page and 'class="note">nothing here' in page
    (data,) = IMG.findall(page)
    assert base64.b64decode(data) == _png()
    written = write_report_files(tmp_path, "report", "Title", sections)
    assert [p.name for p in written] == ["report.html", "one.png"] and (tmp_path / "report_png" / "one.png").is_file()


def test_training_scalars_read_a_lightning_metrics_csv(tmp_path):
    log = tmp_path / "tb" / "version_0"
    log.mkdir(parents=True)
    pd.DataFrame(
        {"step": [0, 1, 2], "epoch": [0, 0, 1], "train_loss": [3.0, 2.0, None], "test_ssim": [None, None, 0.5]}
    ).to_csv(log / "metrics.csv", index=False)
    scalars, where = training_scalars(
        tmp_path, RunConfig.build("diffae", {}, {"model": {"latent_dim": 4}}), tmp_path / "tb"
    )
    assert list(scalars) == ["train_loss"] and scalars["train_loss"]["value"].tolist() == [3.0, 2.0]
    assert where == str(tmp_path / "tb")
    (tmp_path / "run").mkdir()
    cfg = RunConfig.build("diffae", {"tblog_path": str(tmp_path / "none")}, {"model": {"latent_dim": 4}})
    assert training_scalars(tmp_path / "run", cfg, None)[0] == {}


def _embedded(page: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(data))) for data in IMG.findall(page)]


@pytest.mark.slow
def test_report_of_a_3d_run_has_every_section_and_its_images(diffae_runs, tmp_path, monkeypatch, repo_root):
    monkeypatch.chdir(repo_root)
    table = tmp_path / "pheno.tsv"
    table.write_text("FID\tAge\n" + "".join(f"{p}\t{40 + n}\n" for n, p in enumerate(diffae_runs.patients)))
    args = ["--run_dir", str(diffae_runs.run3d), "--phenotype", str(table), "Age", "--direction", "index", "0",
            "--ddim_steps", "1", "--load_best", "--out", str(tmp_path / "rep"), "--no_progress"]  # fmt: skip
    assert _executor().main(args) == 0
    page = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert [s for s in SECTIONS if f'<section id="{s}">' in page] == SECTIONS
    assert "No logged" not in page and "No reconstructions" not in page  # every section found its inputs
    assert "coloured by Age" in page and "Subject " in page
    images = _embedded(page)
    pngs = sorted(p.name for p in (tmp_path / "rep" / "report_png").iterdir())
    expected = {"training_curves", "test_metrics", "recon_0", "latent_histograms", "latent_correlation", "latent_pca"}
    assert expected | {"manipulation"} <= {p.removesuffix(".png") for p in pngs}
    assert len(images) == len(pngs) and all(im.format == "PNG" and min(im.size) > 100 for im in images)
    assert "http" not in page.replace("http-equiv", "") and "<script" not in page  # opens offline, as one file
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["report.html", "report_png"]  # nothing staged


@pytest.mark.slow
def test_report_of_a_2d_run_says_what_is_missing(diffae_runs, tmp_path, monkeypatch, repo_root, capsys):
    monkeypatch.chdir(repo_root)
    (tmp_path / "empty_tb").mkdir()
    args = ["--run_dir", str(diffae_runs.run2d), "--tblog", str(tmp_path / "empty_tb"), "--out", str(tmp_path / "r")]
    assert _executor().main(args) == 0
    page = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert "No logged training metrics found in" in page and "give --phenotype TABLE COLUMN" in page
    assert '<section id="manipulation">' not in page and len(_embedded(page)) >= 5

    bad = [
        "--run_dir",
        str(diffae_runs.run2d),
        "--phenotype",
        str(tmp_path / "no.tsv"),
        "Age",
        "--out",
        str(tmp_path / "x"),
    ]
    assert run_guarded(_executor().main, bad) == 2
    assert "no.tsv does not exist" in capsys.readouterr().err and not (tmp_path / "x").exists()
    bad = ["--run_dir", str(diffae_runs.run2d), "--output", "Output_none", "--out", str(tmp_path / "x")]
    assert run_guarded(_executor().main, bad) == 2
    assert "--output Output_none: no such folder" in capsys.readouterr().err and not (tmp_path / "x").exists()
