"""The explorer's computations on a tiny trained 3D DiffAE: loading, moving, uploads, and what it says on screen."""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import pytest

from Engineering.apps.explorer_session import Explorer, open_explorer
from Engineering.data.demo import write_series_file
from Engineering.engines.diffae_inference import load_subject, manipulate
from Engineering.errors import DataError

pytestmark = pytest.mark.slow
STEPS = 2


@pytest.fixture(scope="module")
def explorer(diffae_runs) -> Explorer:
    explorer = open_explorer(str(diffae_runs.run3d), None, ddim_steps=STEPS)
    yield explorer
    explorer.close()


def _stored(explorer: Explorer, subject: str) -> tuple[str, np.ndarray]:
    """Key and array (C, T, S, X, Y) of the subject's series in the run's data file."""
    key = load_subject(explorer.run, subject).key
    with h5py.File(explorer.data_file(), "r") as f:
        return key, f[key][()]


def test_the_page_text_names_the_steps_the_latents_and_the_directions(explorer, diffae_runs):
    text = explorer.describe()
    assert f"DDIM steps: {STEPS}** for the inversion and {STEPS} for each decode" in text
    assert "emb.h5" in text and "Z0, Z1, Z2" in text
    assert explorer.subjects() == sorted(diffae_runs.patients)


def test_moving_is_the_manipulation_of_the_api_and_zero_is_the_reconstruction(explorer, diffae_runs):
    subject = diffae_runs.patients[0]
    view = explorer.load(subject)
    assert view.inp.shape == view.recon.shape == (6, 32, 32) and view.z.shape == (1, 8)
    assert explorer.move(view, [0.0, 0.0, 0.0]).moved is None

    alphas = [1.5, 0.0, -1.0]
    moved = explorer.move(view, alphas)
    offsets = sum(d.offsets([a]) for d, a in zip(explorer.directions, alphas, strict=True))
    np.testing.assert_allclose(moved.moved_z - view.z.numpy(), offsets, rtol=1e-5, atol=1e-6)
    series = load_subject(explorer.run, subject)
    expected = manipulate(explorer.run, series, np.vstack([np.zeros_like(offsets), offsets]), STEPS, progress=False)
    np.testing.assert_allclose(series.frames(expected[0]), view.recon, atol=1e-5)
    np.testing.assert_allclose(series.frames(expected[1]), moved.moved, atol=1e-5)
    assert not np.array_equal(moved.moved, view.recon)

    bars, panels = explorer.bars(moved, 2), explorer.panels(moved, 2)
    assert bars.shape[2] == panels.shape[2] == 3 and explorer.map(moved) is not None


def test_an_upload_of_the_subjects_own_series_gives_its_input_and_reconstruction(explorer, diffae_runs, tmp_path):
    subject = diffae_runs.patients[1]
    key, stored = _stored(explorer, subject)
    own = explorer.load(subject)
    nifti = tmp_path / "cine.nii.gz"
    nib.save(nib.Nifti1Image(np.transpose(stored[0], (2, 3, 1, 0)), np.eye(4)), nifti)  # (T,S,X,Y) -> (x,y,z,t)
    copy = write_series_file(tmp_path / "one.h5", {key: stored})
    for path in (nifti, copy):
        upload = explorer.load_upload(path)
        np.testing.assert_allclose(upload.inp, own.inp, atol=1e-6)
        np.testing.assert_allclose(upload.recon, own.recon, atol=1e-5)
    assert upload.series.subject == subject and explorer.load_upload(nifti).series.subject == "cine.nii.gz"


def test_wrong_subjects_uploads_and_latent_files_are_one_readable_line(explorer, diffae_runs, tmp_path):
    with pytest.raises(DataError, match="subject 999999 is not in .*data.h5"):
        explorer.load("999999")
    with pytest.raises(DataError, match="no subject chosen"):
        explorer.load(" ")
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 1, 4), np.int16), np.eye(4)), tmp_path / "short.nii")
    with pytest.raises(DataError, match=r"upload short.nii: .*no samples selected.*the run's input shape is 6,32,32"):
        explorer.load_upload(tmp_path / "short.nii")
    with pytest.raises(DataError, match="latent file .*missing_emb.h5 does not exist"):
        open_explorer(str(diffae_runs.run3d), None, emb=str(tmp_path / "missing_emb.h5"))


def test_an_exported_folder_explores_like_its_run(explorer, diffae_runs, tmp_path):
    from Engineering.hub.export import export_run

    folder = export_run(diffae_runs.run3d, tmp_path / "exported")
    emb = explorer.reference.path
    hf = open_explorer(None, str(folder), data=str(explorer.data_file()), emb=str(emb), ddim_steps=STEPS)
    try:
        assert "weights `model.safetensors`" in hf.describe() and hf.subjects() == explorer.subjects()
        subject = diffae_runs.patients[2]
        np.testing.assert_allclose(hf.load(subject).recon, explorer.load(subject).recon, atol=1e-5)
    finally:
        hf.close()
    bare = open_explorer(None, str(folder), ddim_steps=STEPS)  # no data, no latents: uploads only, said on screen
    try:
        assert bare.subjects() == [] and bare.directions == [] and "No latent map:" in bare.describe()
    finally:
        bare.close()


def test_a_2d_run_is_explored_frame_by_frame(diffae_runs):
    explorer = open_explorer(str(diffae_runs.run2d), None, ddim_steps=1)
    try:
        assert len(explorer.reference.table) > len(diffae_runs.patients)  # one reference latent per stored frame
        view = explorer.load(diffae_runs.patients[0])
        assert view.inp.shape == view.recon.shape == (6, 32, 32) and view.z.shape == (6, 8)  # one latent per frame
        assert not np.array_equal(explorer.bars(view, 0), explorer.bars(view, 5))
        moved = explorer.move(view, [2.0, 0.0, 0.0])
        assert moved.moved.shape == (6, 32, 32) and explorer.map(moved) is not None
    finally:
        explorer.close()
