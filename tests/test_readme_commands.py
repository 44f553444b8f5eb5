"""Every command in README's ```bash blocks runs as written, against the demo data.

The commands run in order in one workspace laid out as a user's checkout (``repo/`` with the repository's
Executors, Configs, Engineering, scripts and Makefile linked in, and ``datasets/`` beside it where the shipped UK
Biobank data JSONs look for their data), from ``repo/`` as README says. ``make demo`` writes the demo run that later
commands name (``demo_run/Results/demo_demofold0_prec32_DiffAE``); the UK Biobank JSON commands read a tiny demo-data
copy under ``../datasets``. What changes from README is listed per command in ``STEPS``: placeholders (``RUN``,
``/data/...``, ``<run name>``) become workspace paths, optional ``[...]`` parts are chosen, and options that make
the sizes tiny are appended. Commands that need a GPU, the network or a cluster are skipped with the reason, after
the checks that can run here (shell syntax, option parsing).

Each README command must be claimed by exactly one step and each step must claim one command, so a README edit
that adds, removes or changes a command fails here until this file says how it runs. The steps use what earlier
steps wrote (the demo run, exports, latent tables): run the module as a whole, not one case with ``-k``.
"""

from __future__ import annotations

import os
import re
import runpy
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from Engineering.data.demo import write_demo_dataset
from tests.data.test_convert_dicom import TRANSVERSE, cine, write_zip

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
LINKED = ("Executors", "Configs", "Engineering", "scripts", "Makefile", "pyproject.toml")
FRAMES, SIZE, LATENT = 6, 32, 16  # the demo's latent size: the GWAS step aligns seeds of both runs
UKBB_DATA = "datasets/ukbbH5s/F20208_Long_axis_heart_images_DICOM_H5v1_LAX_4Ch_transverse_cropped_128_128"
UKBB_FOLDS = "5folds_1Ses_100DS_60Trn_10Val_30Tst_1701seed.csv"
DEMO_RUN = "demo_run/Results/demo_demofold0_prec32_DiffAE"
DEMO_REGRESSOR = "demo_provafp16_diffAEfold0_prec32-true_LtCls"
UKBB_RUN = "F20208_heart_1Ses_time2slc_MskCrop128_prova3D_diffAEfold0_prec16-mixed_DiffAE"

# appended to commands written for full-size UK Biobank data: CPU, tiny volumes and networks, one epoch
CPU = "--accelerator cpu --num_workers 0"
TINY_DATA = f"{CPU} --json§DS_sanity_filters§dim1 {FRAMES} --input_shape {FRAMES},{SIZE},{SIZE}"
TINY_PYTHAE = f"{CPU} --json§DS_sanity_filters§dim1 {FRAMES} --input_shape 16,{SIZE},{SIZE}"  # ConvNets: multiples of 8
TINY_TRAIN = "--num_epochs 1 --effective_batch_size 2 --eval§n_calc_processes 0"
TINY_DIFFAE = f"--batch_size 2 --model§latent_dim {LATENT} --model§DiffAE§net_ch 8 --model§DiffAE§T_eval 2"


# ------------------------------------------------------------------------------------------ README's commands


@dataclass(frozen=True)
class ReadmeCommand:
    line: int  # README line where the command starts
    text: str  # continuation lines joined, comments dropped; a whole script for a block starting with #!


def readme_commands(text: str) -> list[ReadmeCommand]:
    """The commands of every ```bash block of ``text``, in order."""
    commands: list[ReadmeCommand] = []
    lines = text.splitlines()
    n = 0
    while n < len(lines):
        if lines[n].strip() != "```bash":
            n += 1
            continue
        end = lines.index("```", n + 1)
        block = lines[n + 1 : end]
        if block and block[0].startswith("#!"):
            commands.append(ReadmeCommand(n + 2, "\n".join(block)))
        else:
            pending, start = "", 0
            for k, raw in enumerate(block, start=n + 2):
                line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
                if not line.strip():
                    continue
                start = start or k
                if line.endswith("\\"):
                    pending += line[:-1].strip() + " "
                    continue
                commands.append(ReadmeCommand(start, (pending + line.strip()).strip()))
                pending, start = "", 0
        n = end + 1
    return commands


# ----------------------------------------------------------------------------------------------- workspace


@dataclass
class Workspace:
    root: Path
    repo: Path
    values: dict[str, str] = field(default_factory=dict)

    def fill(self, text: str) -> str:
        return text.format(**self.values)


def _ukbb_layout(root: Path) -> None:
    """Tiny demo data where the shipped UK Biobank JSONs look (``../datasets`` from the repository root)."""
    demo = write_demo_dataset(root / UKBB_DATA, n_patients=8, frames=FRAMES, size=SIZE, n_folds=2, seed=3)
    shutil.copy(demo.folds_csv, demo.datadir / UKBB_FOLDS)
    ids = np.array([int(p) for p in demo.patient_ids])
    rng = np.random.default_rng(0)
    phenos = root / "datasets" / "ukbbPhenos"
    phenos.mkdir(parents=True)
    edv = rng.normal(150, 20, len(ids))
    esv = rng.normal(60, 10, len(ids))
    pd.DataFrame(
        {"FID": ids, "LV_endDiastolicVol": edv, "LV_endSystolicVol": esv, "LV_StrokeVol": edv - esv,
         "Sex": np.arange(len(ids)) % 2, "Age": rng.normal(60, 8, len(ids)).round(1)}
    ).to_csv(phenos / "phenotypes.tsv", sep="\t", index=False)  # fmt: skip
    pd.DataFrame(
        {"FID": ids, "Gender": np.arange(len(ids)) % 2, "Age": rng.normal(60, 8, len(ids)).round(1),
         "MRI_Date": ["2018-01"] * 4 + ["2019-06"] * (len(ids) - 4), "BMI": rng.normal(26, 3, len(ids)),
         "MRI_Centre": ["11025", "11027"] * (len(ids) // 2), "BSA": rng.normal(1.9, 0.2, len(ids)),
         "MRI_Visit": [2] * len(ids)}
    ).to_csv(phenos / "confounders.tsv", sep="\t", index=False)  # fmt: skip


def _dicom_and_nifti(root: Path) -> None:
    """``/data/zips``: UK Biobank zips of 4-chamber cines (50 frames, as field 20208); ``/data/nifti``: T1 volumes."""
    import nibabel as nib

    zips = root / "data" / "zips"
    zips.mkdir(parents=True)
    for n, eid in enumerate(str(1000011 + 11 * k) for k in range(10)):  # --per_val 0.1 needs 10 for one
        files = cine(f"1.9.{n}", "CINE_segmented_LAX_4Ch", TRANSVERSE, frames=50, size=8, number=1, base=10 * n)
        write_zip(zips / f"{eid}_20208_2_0.zip", files, manifest=False)
    nifti = root / "data" / "nifti"
    nifti.mkdir(parents=True)
    for eid in ("1000011", "1000022"):
        volume = np.random.default_rng(int(eid)).integers(0, 1000, (8, 8, 4)).astype(np.int16)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), nifti / f"{eid}_2_0_T1.nii.gz")


def _gwas_inputs(repo: Path) -> None:
    ids = [1000011 + 11 * k for k in range(8)]
    pd.DataFrame(
        {"FID": ids, "IID": ids, "Sex": [k % 2 for k in range(8)], "Batch": ["b1", "b2"] * 4,
         "Centre": ["11025"] * 4 + ["11027"] * 4, "Age": np.linspace(45, 75, 8)}
    ).to_csv(repo / "covars.tsv", sep="\t", index=False)  # fmt: skip
    (repo / "outliers.txt").write_text(f"{ids[-1]}\n")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("readme")
    repo = root / "repo"
    repo.mkdir()
    for name in LINKED:
        (repo / name).symlink_to(REPO_ROOT / name)
    _ukbb_layout(root)
    _dicom_and_nifti(root)
    _gwas_inputs(repo)
    return Workspace(root, repo, {"ws": str(root)})


# --------------------------------------------------------------------------------------------- running them


@dataclass(frozen=True)
class Step:
    """How one README command runs here."""

    readme: str  # a regular expression that finds the README command (it must match exactly one)
    replace: tuple[tuple[str, str], ...] = ()  # README text -> what runs here ({ws}: the workspace root)
    append: str = ""  # options added at the end (tiny sizes, CPU)
    skip: str = ""  # why it does not run here (after `check`)
    prepare: Callable[[Workspace], None] | None = None  # workspace set-up this command assumes (its inputs)
    check: Callable[[Workspace, str], None] | None = None  # replaces running the command; else run it
    expect: tuple[str, ...] = ()  # paths (relative to repo/) that must exist afterwards


def _link(pairs: dict[str, str]) -> Callable[[Workspace], None]:
    """Folders a command takes as given (``S1701/Output_fullDS``): links to outputs that earlier commands wrote."""

    def prepare(ws: Workspace) -> None:
        for name, target in pairs.items():
            path = ws.repo / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                path.unlink()  # an earlier command's link to another output
            path.symlink_to((ws.repo / target).resolve(), target_is_directory=True)

    return prepare


def run_python(ws: Workspace, argv: list[str], env: dict[str, str]) -> int:
    """``python SCRIPT ARGS`` in this process (as the e2e tests do), from repo/ with ``env`` set."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ws.repo)
        patch.setattr(sys, "argv", argv)
        patch.setattr(sys, "path", list(sys.path))
        for key, value in env.items():
            patch.setenv(key, value)
        try:
            runpy.run_path(argv[0], run_name="__main__")
        except SystemExit as done:
            return done.code if isinstance(done.code, int) else int(done.code is not None)
    return 0


def run_shell(ws: Workspace, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=ws.repo, env={**os.environ, **env}, capture_output=True, text=True, timeout=600, check=False
    )


def split_env(command: str) -> tuple[dict[str, str], list[str]]:
    tokens = shlex.split(command)
    env: dict[str, str] = {}
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", tokens[0]):
        key, value = tokens.pop(0).split("=", 1)
        env[key] = value
    return env, tokens


def check_make_demo(ws: Workspace, command: str) -> None:
    """``make demo`` runs scripts/demo.sh (make -n shows the recipe without touching the venv); the test then runs
    that script itself, with tiny volumes, so that it does not reinstall a venv inside the workspace."""
    recipe = run_shell(ws, ["make", "-n", "demo", f"VENV={sys.prefix}"], {})
    assert recipe.returncode == 0, recipe.stderr
    assert re.search(r"^bash scripts/demo\.sh \S+ demo_run$", recipe.stdout, re.M), recipe.stdout
    done = run_shell(
        ws,
        ["bash", "scripts/demo.sh", sys.executable, "demo_run"],
        {"DEMO_FRAMES": str(FRAMES), "DEMO_SIZE": str(SIZE)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Demo finished." in done.stdout


def check_syntax(ws: Workspace, command: str) -> None:
    """``bash -n`` of the script the command runs (a file of the workspace, or the README block itself)."""
    _, tokens = split_env(command) if not command.startswith("#!") else ({}, [])
    script = ws.repo / tokens[1] if tokens else ws.root / "readme_block.sh"
    if not tokens:
        script.write_text(command)
    assert script.is_file(), script
    done = run_shell(ws, ["bash", "-n", str(script)], {})
    assert done.returncode == 0, done.stderr


def check_sbatch(ws: Workspace, command: str) -> None:
    """The sbatch script is valid bash, and the options of the command it starts parse and validate."""
    from Engineering.configuration.resolve import resolve

    check_syntax(ws, command)
    srun = re.search(r"^srun python Executors/main_diffAE\.py (.*?)(?<!\\)$", command, re.M | re.S)
    assert srun, "no srun line in the sbatch block"
    argv = shlex.split(srun.group(1).replace("\\\n", " "))
    argv[argv.index("--datajson_path") + 1] = "Configs/UKBB208/dataNpath_F20208_time2slc_4ChTransverse_Crop128.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ws.repo)
        cfg = resolve("diffae", argv).typed()
    assert (cfg.run.ndevices, cfg.run.nnodes, cfg.run.training_strategy) == (4, 2, "ddp")


def check_server(ws: Workspace, command: str) -> None:
    """The explorer starts and serves its page; stopped after the first answer."""
    env, tokens = split_env(command)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tokens = [sys.executable if t == "python" else t for t in tokens] + ["--port", str(port)]
    log = ws.root / "explore.log"
    with log.open("w") as out:
        proc = subprocess.Popen(tokens, cwd=ws.repo, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                    assert page.status == 200 and b"gradio" in page.read().lower()
                    return
            except OSError:
                time.sleep(1)
        pytest.fail("the explorer did not answer within 300 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


UKBB = f"../Results/{UKBB_RUN}"
STEPS: tuple[Step, ...] = (
    # ---- Quick start
    Step("make demo", check=check_make_demo, expect=(f"{DEMO_RUN}/Output/emb.h5", "demo_data/phenotypes.tsv")),
    Step("make test", skip="runs the test suite, this test included"),
    # ---- Usage: executors
    Step(
        "main_recon.py --batch_size 32",
        replace=(("/myres/", "{ws}/myres/"),),
        append=f"{TINY_PYTHAE} {TINY_TRAIN}",
        expect=("{ws}/myres/Results",),
    ),
    Step(
        "main_diffAE.py --datajson_path Configs/UKBB208",
        append=f"{TINY_DATA} {TINY_TRAIN} {TINY_DIFFAE}",
        expect=(f"{UKBB}/Output/emb.h5",),
    ),
    Step(
        r"--resume --run_mode 2 --run_dir demo_run/Results/demo_demofold0_prec32_DiffAE$",
        expect=(f"{DEMO_RUN}/Output/emb.h5",),
    ),
    Step(
        "--resume --load_best --run_mode 2 --run_dir RUN",
        replace=(("RUN", UKBB),),
        expect=(f"{UKBB}/Output_fullDS/emb.h5",),
    ),
    # ---- your own data
    Step("convert_dicom.py", replace=(("/data/", "{ws}/data/"),), expect=("{ws}/data/F20208/data.h5",)),
    Step("convert_nifti.py", replace=(("/data/", "{ws}/data/"),), expect=("{ws}/data/T1/data.h5",)),
    Step("make_folds.py", replace=(("/data/", "{ws}/data/"),)),
    Step("validate_h5.py", replace=(("/data/", "{ws}/data/"),)),
    # ---- pretrained weights: export first, then load the export offline
    Step(
        "export_hf.py",
        replace=(("<run_name>", UKBB_RUN), (" [--push ORG/NAME]", "")),  # --push needs HF_TOKEN and the network
        expect=("exported/config.json",),
    ),
    Step(
        "--load_hf /models/UKBBLatent_S1701",
        replace=(("/models/UKBBLatent_S1701", "exported"),),
        append=f"{TINY_DATA} {TINY_DIFFAE} --json§save_path ../Results_hf",  # the export's architecture
    ),
    Step("--test_emb_only", skip="downloads from the Hugging Face Hub (no network here); the offline command runs"),
    Step(
        "DiffAE3D_L128_S1701@main",
        skip="downloads from the Hugging Face Hub (no network here); the offline command runs",
    ),
    # ---- latents
    Step(
        "--parent_outfolder Output_fullDSV2",
        replace=(
            ("<parent run name>", UKBB_RUN),
            ("Output_fullDSV2", "Output_fullDS"),
            ("--in_channels 128", f"--in_channels {LATENT}"),
        ),
        append=f"{CPU} --num_epochs 3",
    ),
    Step(
        "--parent_trainID <run> --json§latent_task classification",
        replace=(("<run>", UKBB_RUN),),
        append=f"--parent_outfolder Output_fullDS --in_channels {LATENT} {CPU} --num_epochs 3",
    ),
    Step("--out latents.csv --visit-rule", replace=(("RUN", UKBB),), expect=("latents.csv",)),
    Step("--out pheno.tsv --gwas", replace=(("RUN", UKBB),), expect=("pheno.tsv",)),
    Step("--from-table latents.csv", expect=("emb.h5",)),
    Step(
        "--names S1701 S42",
        prepare=_link({"S1701/Output_fullDS": f"{UKBB}/Output_fullDS", "S42/Output_fullDS": f"{DEMO_RUN}/Output"}),
        expect=("merged.csv",),
    ),
    Step(
        "--h5-union",
        prepare=_link({"OLD/Output_fullDSV2": f"{UKBB}/Output", "NEW/Output_new": f"{UKBB}/Output_fullDS"}),
        expect=("ALL/emb.h5",),
    ),
    # ---- the demo run's latents
    Step(
        "--run_dir demo_run/Results/demo_demofold0_prec32_DiffAE --output_suffix fullDS",
        expect=(f"{DEMO_RUN}/Output_fullDS/emb.h5",),
    ),
    Step(r"--in_channels 16 --accelerator cpu$", append="--num_epochs 3"),
    Step("--trainID sexcls", append="--num_epochs 3"),
    # ---- what the latents mean
    Step("--direction index 3 --alphas", replace=(("RUN", DEMO_RUN),)),
    Step(
        "--direction latentcls",
        replace=(("LATENTCLS_RUN", f"{DEMO_RUN}/ClassifyLatent/{DEMO_REGRESSOR}"), ("RUN", DEMO_RUN), ("LVEF", "Age")),
    ),
    Step(
        r"--direction phenotype pheno\.tsv Age \[ridge\|logistic\]",
        replace=(("RUN", DEMO_RUN), ("pheno.tsv", "demo_data/phenotypes.tsv"), (" [ridge|logistic]", " ridge")),
    ),
    Step("--between", replace=(("RUN", DEMO_RUN), ("--ddim_steps 20", "--ddim_steps 5"))),  # the demo's T_eval
    Step("report.py", replace=(("RUN", DEMO_RUN), ("pheno.tsv", "demo_data/phenotypes.tsv"))),
    Step(
        "explore.py",
        replace=(
            ("RUN", DEMO_RUN),
            ("[--ddim_steps 10]", "--ddim_steps 10"),
            ("[--direction phenotype pheno.tsv Age]", "--direction phenotype demo_data/phenotypes.tsv Age"),
            (" [--port 7860]", ""),
        ),  # fmt: skip
        check=check_server,
    ),
    # ---- GWAS
    Step(
        "gwas_prepare.py",
        # --merge mcca needs more shared subjects than latent columns: the demo has 12 and 16 (tests/outputs merge)
        replace=(("[--align --merge mcca]", "--align"),),
        prepare=_link(
            {
                "S1701/Output_fullDS": f"{UKBB}/Output_fullDS",
                "S42/Output_fullDS": f"{DEMO_RUN}/Output_fullDS",
                "S1993/Output_fullDS": f"{DEMO_RUN}/Output_fullDS",
            }
        ),  # fmt: skip
        expect=("gwas/phenotypes_int.tsv", "gwas/run_regenie.sh"),
    ),
    Step("run_regenie.sh", check=check_syntax, skip="runs regenie on genotype files (bash -n of the script passed)"),
    # ---- scaling out
    Step("#SBATCH", check=check_sbatch, skip="needs SLURM and 2 nodes x 4 GPUs (bash -n passed; its options parse)"),
)


def _claims() -> list[tuple[Step, ReadmeCommand]]:
    commands = readme_commands(README.read_text(encoding="utf-8"))
    pairs = []
    for step in STEPS:
        matches = [c for c in commands if re.search(step.readme, c.text)]
        assert len(matches) == 1, f"step {step.readme!r} matches {len(matches)} README commands"
        pairs.append((step, matches[0]))
    unclaimed = [c for c in commands if c not in {m for _, m in pairs}]
    assert not unclaimed, "README commands with no step here: " + "; ".join(
        f"line {c.line}: {c.text}" for c in unclaimed
    )
    return pairs


def test_every_readme_command_has_one_step():
    pairs = _claims()
    assert len({c for _, c in pairs}) == len(STEPS)


@pytest.mark.parametrize("step", STEPS, ids=[re.sub(r"\W+", "_", s.readme).strip("_")[:48] for s in STEPS])
def test_readme_command(step: Step, workspace: Workspace, capfd):
    command = dict((s, c) for s, c in _claims())[step].text
    for old, new in step.replace:
        assert old in command, f"README command no longer contains {old!r}: {command}"
        command = command.replace(old, workspace.fill(new))
    if step.append:
        command = f"{command} {step.append}"
    if step.prepare:
        step.prepare(workspace)
    if step.check:
        step.check(workspace, command)
    elif not step.skip:
        env, tokens = split_env(command)
        if tokens[0] == "python":
            code = run_python(workspace, tokens[1:], env)
            out = capfd.readouterr()
            assert code == 0, f"exit {code}: {command}\n{out.out[-3000:]}\n{out.err[-3000:]}"
        else:
            done = run_shell(workspace, tokens, env)
            assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    for path in step.expect:
        assert (workspace.repo / workspace.fill(path)).exists(), f"{command} did not write {path}"
    if step.skip:
        pytest.skip(f"README line {dict(_claims())[step].line}: {step.skip}")
