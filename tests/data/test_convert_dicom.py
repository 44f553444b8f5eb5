"""DICOM converter: UKB zips and folder trees → 5-D series with keys, planes, repeats, attributes; bad files skipped."""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile

import h5py
import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from Engineering.data.convert.config import FieldConfig, load_field_config, plane_from_orientation
from Engineering.data.convert.dicom import convert_dicom
from Engineering.errors import ConfigError, DataError, run_guarded

TRANSVERSE = [1, 0, 0, 0, 1, 0]
SAGITTAL = [0, 1, 0, 0, 0, -1]
F20208 = FieldConfig(
    primary_data=["CINE_segmented_LAX_3Ch", "CINE_segmented_LAX_4Ch", "CINE_segmented_LAX_2Ch"],
    primary_data_tags=["LAX_3Ch", "LAX_4Ch", "LAX_2Ch"],
    multi_primary=True,
    is_3D=False,
    is_dynamic=True,
    multi_channel=False,
)


def dicom_bytes(uid, desc, iop, instance, pixels, number=1, ipp=(0, 0, 0), echo=None, pid="1000011"):
    """One single-frame MR DICOM file as bytes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = f"{uid}.{instance}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.StudyInstanceUID, ds.StudyDate, ds.StudyDescription = pid, "1.2.3", "20180102", "Heart"
    ds.SeriesInstanceUID, ds.SeriesDescription, ds.SeriesNumber = uid, desc, number
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.ImageOrientationPatient, ds.ImagePositionPatient = list(iop), list(ipp)
    ds.InstanceNumber, ds.AcquisitionNumber, ds.TriggerTime = instance, 1, 10.0 * instance
    ds.InstitutionAddress, ds.ImageComments = "Cheadle", "cine;7 cycles"
    if echo is not None:
        ds.EchoNumbers = echo
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def cine(uid, desc, iop, frames=4, size=8, number=1, base=0):
    """{file name: bytes} of a single-position cine; pixel value = base + frame index."""
    return {
        f"{uid}_{n}.dcm": dicom_bytes(uid, desc, iop, n + 1, np.full((size, size), base + n), number)
        for n in range(frames)
    }


def write_zip(path, files, manifest=True):
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in files.items():
            zf.writestr(name, blob)
        if manifest:
            zf.writestr(
                "manifest.csv",
                "seriesid,patientid,studyid,study discription,aet,host,date,series discription\n"
                "1.9.1,ANON1,1.2.3,CardiacMRI,CMR_CHEADLE,Cheadle,20180102,x\n"
                "1.9.2,ANON1,1.2.3,CardiacMRI,CMR_CHEADLE,Cheadle,20180102,y\n",
            )
    return path


def test_ukb_zip_layout_keys_and_attributes(tmp_path):
    files = {
        **cine("1.9.1", "CINE_segmented_LAX_4Ch", TRANSVERSE, number=3),
        **cine("1.9.2", "CINE_segmented_LAX_2Ch", SAGITTAL, number=1),
        **cine("1.9.3", "CINE_segmented_LAX_4Ch", TRANSVERSE, number=5, base=100),  # repeat, acquired later
        **cine("1.9.4", "localiser", TRANSVERSE),
        "broken.dcm": b"not a dicom file",
    }
    write_zip(tmp_path / "1000011_20208_2_0.zip", files)
    report = convert_dicom(tmp_path, tmp_path / "out" / "data.h5", F20208, progress=False)
    with h5py.File(tmp_path / "out" / "data.h5", "r") as f:
        group = f["1000011/20208/2_0"]
        assert sorted(group) == [
            "primary_LAX_2Ch_sagittal_0",
            "primary_LAX_4Ch_transverse_0",
            "primary_LAX_4Ch_transverse_1",
        ]
        ds = group["primary_LAX_4Ch_transverse_0"]
        assert ds.shape == (1, 4, 1, 8, 8) and ds.dtype == np.uint16 and ds.chunks == ds.shape
        assert ds[0, :, 0, 0, 0].tolist() == [0, 1, 2, 3]  # time ordered by trigger time / instance number
        assert group["primary_LAX_4Ch_transverse_1"][0, 0, 0, 0, 0] == 100
        assert (ds.attrs["min_val"], ds.attrs["max_val"]) == (0, 3)
        assert (
            json.loads(ds.attrs["seriesID"]) == {"mag_0": "1.9.1"}
            and ds.attrs["seriesDesc"] == "CINE_segmented_LAX_4Ch"
        )
        header = json.loads(ds.attrs["DICOMHeader"])["mag_0"]
        assert header["0008|0008"] == "ORIGINAL\\PRIMARY\\M\\ND" and header["0008|0081"] == "Cheadle"
        assert [float(v) for v in header["0020|0037"].split("\\")] == TRANSVERSE and not any(
            k.startswith("7fe0") for k in header
        )
        assert (
            group.attrs["aet"] == "CMR_CHEADLE" and group.attrs["date"] == "20180102" and group.attrs["n_series"] == 2
        )
    reasons = dict(report.skipped)
    assert report.series == 3 and report.groups == 1
    assert "not a DICOM file" in reasons["1000011_20208_2_0.zip:broken.dcm"]
    assert any("'localiser'" in w and "matches no primary_data" in r for w, r in report.skipped)


def test_folder_tree_multi_echo_slices_and_no_manifest(tmp_path):
    root = tmp_path / "in" / "patientA"
    root.mkdir(parents=True)
    n = 0
    for echo in (1, 2):
        for z in (0.0, 5.0, 10.0):
            for t in range(2):
                n += 1
                blob = dicom_bytes(
                    "1.5",
                    "T2 map",
                    TRANSVERSE,
                    n,
                    np.full((4, 6), 100 * echo + z + t),
                    ipp=(0, 0, z),
                    echo=echo,
                    pid="P7",
                )
                (root / f"f{n:02d}.dcm").write_bytes(blob)
    report = convert_dicom(
        tmp_path / "in", tmp_path / "d.h5", FieldConfig(), "99", "2_0", compress=True, progress=False
    )
    with h5py.File(tmp_path / "d.h5", "r") as f:
        ds = f["P7/99/2_0/primary_T2_map_transverse_0"]
        assert ds.shape == (2, 2, 3, 4, 6) and ds.compression == "gzip"
        assert ds[1, 1, 2, 0, 0] == 200 + 10 + 1
        assert f["P7/99/2_0"].attrs["patientDICOMID"] == "P7" and f["P7/99/2_0"].attrs["aet"] == ""
    assert report.skipped == []


def test_irregular_series_and_axis_flags_are_skipped(tmp_path):
    files = cine("1.9.1", "CINE_segmented_LAX_4Ch", TRANSVERSE)
    files["extra.dcm"] = dicom_bytes("1.9.1", "CINE_segmented_LAX_4Ch", TRANSVERSE, 9, np.zeros((8, 8)), ipp=(0, 0, 5))
    files.update(cine("1.9.2", "CINE_segmented_LAX_2Ch", SAGITTAL))
    write_zip(tmp_path / "1000022_20208_2_0.zip", files)
    flags = FieldConfig(
        primary_data=["CINE_segmented_LAX_4Ch", "CINE_segmented_LAX_2Ch"],
        primary_data_tags=["a", "b"],
        multi_primary=True,
        is_dynamic=False,
    )
    with pytest.raises(
        DataError,
        match=r"no series converted from .* \(3 item\(s\) skipped\); first skip: .*irregular series: 1 echo\(es\) × 2 position",
    ):
        convert_dicom(tmp_path, tmp_path / "d.h5", flags, progress=False)
    assert not (tmp_path / "d.h5").exists() and not list(tmp_path.glob(".d.h5*"))


def test_bad_zip_and_duplicate_source_do_not_abort(tmp_path):
    write_zip(tmp_path / "1000011_20208_2_0.zip", cine("1.9.1", "CINE_segmented_LAX_4Ch", TRANSVERSE))
    (tmp_path / "dup").mkdir()
    write_zip(tmp_path / "dup" / "1000011_20208_2_0.zip", cine("1.9.7", "CINE_segmented_LAX_4Ch", TRANSVERSE))
    (tmp_path / "1000033_20208_2_0.zip").write_bytes(b"PK broken")
    report = convert_dicom(tmp_path, tmp_path / "d.h5", F20208, progress=False)
    text = report.summary()
    assert report.groups == 1 and "BadZipFile" in text and "group 1000011/20208/2_0 was already written from" in text


def test_yaml_config_and_plane():
    cfg = load_field_config("Configs/convert/F20208.yaml")
    assert cfg.base_key("CINE_segmented_LAX_4Ch") == "primary_LAX_4Ch" and cfg.default_plane is None
    assert cfg.plane_suffix("transverse") == "_transverse" and cfg.is_dynamic is True
    assert plane_from_orientation(SAGITTAL) == "sagittal" and plane_from_orientation([1, 0, 0, 0, 0, -1]) == "coronal"
    with pytest.raises(
        ConfigError, match="multi_primary needs one primary_data_tags entry per primary_data entry; got 1 tags for 2"
    ):
        FieldConfig(primary_data=["a", "b"], primary_data_tags=["x"], multi_primary=True)
    with pytest.raises(ConfigError, match="unknown key\\(s\\) bogus"):
        FieldConfig.from_mapping({"bogus": 1}, "meta.yaml")


def _executor(repo_root):
    spec = importlib.util.spec_from_file_location("convert_dicom", repo_root / "Executors" / "convert_dicom.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_smoke(tmp_path, repo_root, capsys):
    write_zip(tmp_path / "1000011_20208_2_0.zip", cine("1.9.1", "CINE_segmented_LAX_4Ch", TRANSVERSE), manifest=False)
    main = _executor(repo_root).main
    args = ["--in", str(tmp_path), "--out", str(tmp_path / "data.h5"), "--no_progress"]
    assert run_guarded(main, [*args, "--config", str(repo_root / "Configs/convert/F20208.yaml")]) == 0
    assert "wrote 1 series in 1 instance group(s); skipped 0 item(s)" in capsys.readouterr().out
    assert run_guarded(main, [*args, "--primary_data", "x"]) == 2
    assert "no series converted from" in capsys.readouterr().err
    assert run_guarded(main, [*args, "--primary_data", "x", "--config", "c.yaml"]) == 2
    assert "--config c.yaml and --primary_data were both given" in capsys.readouterr().err
