"""Converters on real MRI files shipped inside pydicom and nibabel (offline), and on DICOM series generated from a real
file with known orientation, echoes, positions, frames and repeats; the HDF5 is checked key by key and value by value.
"""

from __future__ import annotations

import copy
import json
import shutil
import zipfile
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.testing import data_path as NIB_DATA
from pydicom.data import get_testdata_file

from Engineering.data.convert.config import FieldConfig
from Engineering.data.convert.dicom import convert_dicom
from Engineering.data.convert.nifti import convert_nifti, map_from_regex

NIB_DATA = Path(NIB_DATA)
MR_SMALL_UID = "1.3.6.1.4.1.5962.1.3.4.1.20040826185059.5457"
# transfer syntaxes that decode with pydicom alone (no optional codec plugins)
MR_SMALL_VARIANTS = ("MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm", "MR_small_implicit.dcm",
                     "MR_small_expb.dcm", "MR_small_padded.dcm")  # fmt: skip
GROUP_ATTRS = {"patientDICOMID", "studyDICOMID", "studyDesc", "aet", "host", "date", "n_series"}
SAGITTAL, CORONAL, TRANSVERSE = [0, 1, 0, 0, 0, -1], [1, 0, 0, 0, 0, -1], [1, 0, 0, 0, 1, 0]


def pydicom_file(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not shipped in this pydicom wheel")
    return Path(path)


def header(ds: h5py.Dataset) -> dict[str, str]:
    return json.loads(ds.attrs["DICOMHeader"])["mag_0"]


def check_series_attrs(ds: h5py.Dataset, expected: np.ndarray, desc: str, uid: str) -> None:
    """Array (dtype, native order, values) and the five dataset attributes."""
    assert ds.shape == expected.shape and ds.dtype == expected.dtype.newbyteorder("=") and ds.dtype.isnative
    np.testing.assert_array_equal(ds[()], expected)
    assert set(ds.attrs) == {"seriesID", "DICOMHeader", "seriesDesc", "min_val", "max_val"}
    assert ds.attrs["min_val"] == expected.min() and ds.attrs["max_val"] == expected.max()
    assert ds.attrs["min_val"].dtype == ds.dtype and ds.attrs["seriesDesc"] == desc
    assert json.loads(ds.attrs["seriesID"]) == {"mag_0": uid}


# ---------------------------------------------------------------- real DICOM (pydicom, nibabel test data)


@pytest.mark.filterwarnings("ignore:The pixel data is 8320 bytes long")  # MR_small_padded.dcm, on purpose
def test_pydicom_mr_small_in_every_transfer_syntax(tmp_path):
    reference = pydicom.dcmread(pydicom_file("MR_small.dcm")).pixel_array  # (64, 64) int16
    eids = {}
    for n, name in enumerate(MR_SMALL_VARIANTS):
        eids[name] = f"100000{n}"
        folder = tmp_path / "in" / f"{eids[name]}_20209_2_0"
        folder.mkdir(parents=True)
        shutil.copy(pydicom_file(name), folder / name)
    report = convert_dicom(tmp_path / "in", tmp_path / "data.h5", FieldConfig(), progress=False)
    assert (report.groups, report.series, report.skipped) == (len(MR_SMALL_VARIANTS), len(MR_SMALL_VARIANTS), [])
    with h5py.File(tmp_path / "data.h5", "r") as f:
        assert sorted(f) == sorted(eids.values())
        for name, eid in eids.items():
            group = f[f"{eid}/20209/2_0"]
            assert list(group) == ["primary_transverse_0"]  # no SeriesDescription; IOP 1,0,0,0,1,0 → transverse
            assert dict(group.attrs) == {
                "patientDICOMID": "4MR1",
                "studyDICOMID": "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457",
                "studyDesc": "",
                "aet": "",
                "host": "",
                "date": "20040826",
                "n_series": 1,
            }
            ds = group["primary_transverse_0"]
            check_series_attrs(ds, reference[None, None, None], "", MR_SMALL_UID)
            assert (ds.attrs["min_val"], ds.attrs["max_val"]) == (127, 2145), name
            tags = header(ds)
            assert tags["0010|0020"] == "4MR1" and tags["0008|0060"] == "MR" and tags["0028|0010"] == "64"
            assert tags["0020|0037"] == "1.0000\\0.0000\\0.0000\\0.0000\\1.0000\\0.0000"
            assert tags["0020|0032"] == "-83.9063\\-91.2000\\6.6406"
            assert tags["0010|1020"] == ""  # empty DS element: "" (as GDCM gives), not "None"
            assert "7fe0|0010" not in tags and all(len(k) == 9 and k[4] == "|" for k in tags)


def test_real_undecodable_file_is_skipped_not_fatal(tmp_path):
    for eid, name in (("1000001", "MR_small.dcm"), ("1000002", "MR_truncated.dcm")):
        (tmp_path / "in" / f"{eid}_20209_2_0").mkdir(parents=True)
        shutil.copy(pydicom_file(name), tmp_path / "in" / f"{eid}_20209_2_0" / name)
    report = convert_dicom(tmp_path / "in", tmp_path / "data.h5", FieldConfig(), progress=False)
    assert (report.groups, report.series) == (1, 1)
    reasons = dict(report.skipped)
    truncated = next(v for k, v in reasons.items() if k.endswith("MR_truncated.dcm"))
    assert truncated.startswith("unreadable DICOM: pixel data cannot be decoded")
    assert reasons["1000002/20209/2_0 (" + str(tmp_path / "in" / "1000002_20209_2_0") + ")"] == (
        "no usable series; the group is not written"
    )
    with h5py.File(tmp_path / "data.h5", "r") as f:
        assert list(f) == ["1000001"]


def test_real_file_in_ukb_zip_takes_group_attributes_from_manifest(tmp_path):
    with zipfile.ZipFile(tmp_path / "1234567_20209_3_0.zip", "w") as zf:
        zf.write(pydicom_file("MR_small.dcm"), "some/dir/1.dcm")
        zf.writestr(
            "manifest.csv",
            "seriesid,patientid,studyid,study discription,aet,host,date,series discription\n"
            f"{MR_SMALL_UID},ANON,9.9,Brain,AE_1,Host1,20200101,x\n"
            f"1.2.3.4,ANON,9.9,Brain,AE_1,Host1,20200101,y\n",
        )
    config = FieldConfig(primary_data=[""], default_plane="transverse")  # the empty description is primary
    convert_dicom(tmp_path / "1234567_20209_3_0.zip", tmp_path / "data.h5", config, progress=False)
    with h5py.File(tmp_path / "data.h5", "r") as f:
        group = f["1234567/20209/3_0"]
        assert list(group) == ["primary_0"]
        assert dict(group.attrs) == {
            "patientDICOMID": "ANON",
            "studyDICOMID": "9.9",
            "studyDesc": "Brain",
            "aet": "AE_1",
            "host": "Host1",
            "date": "20200101",
            "n_series": 2,  # counted in the manifest, not in the files
        }
        assert isinstance(group.attrs["n_series"], np.int64)


def test_nibabel_siemens_dti_slices(tmp_path):
    """nibabel's 0.dcm/1.dcm: one Siemens series, two positions 3 mm apart, private CSA group 0029."""
    folder = tmp_path / "in" / "dicoms"
    folder.mkdir(parents=True)
    for name in ("1.dcm", "0.dcm"):
        shutil.copy(NIB_DATA / name, folder / f"x{name}")
    report = convert_dicom(tmp_path / "in", tmp_path / "data.h5", FieldConfig(), "20210", "2_0", progress=False)
    assert report.skipped == []
    files = [pydicom.dcmread(NIB_DATA / n) for n in ("0.dcm", "1.dcm")]  # 0.dcm is lower along the normal
    expected = np.stack([ds.pixel_array for ds in files])[None, None]  # (1, 1, 2, 256, 256) uint16
    with h5py.File(tmp_path / "data.h5", "r") as f:
        group = f["1234/20210/2_0"]  # patient from PatientID outside UKB-named folders
        assert list(group) == ["primary_CBU_DTI_64D_1A_transverse_0"]
        assert group.attrs["studyDesc"] == "CBU^Neuroimaging" and group.attrs["date"] == "20100114"
        ds = group["primary_CBU_DTI_64D_1A_transverse_0"]
        check_series_attrs(ds, expected, "CBU_DTI_64D_1A", files[0].SeriesInstanceUID)
        tags = header(ds)
        assert tags["0008|103e"] == "CBU_DTI_64D_1A" and tags["0020|0013"] == "1"  # from the first slice
        assert tags["0008|0008"] == "ORIGINAL\\PRIMARY\\DIFFUSION\\NONE\\ND\\MOSAIC"
        assert not any(k.startswith("0029|") for k in tags)


# ---------------------------------------------------------------- generated series with known geometry


def _write(folder: Path, name: str, template: pydicom.Dataset, pixels: np.ndarray, **tags: object) -> None:
    ds = copy.deepcopy(template)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.astype(np.int16).tobytes()
    ds.save_as(folder / name, enforce_file_format=True)


def test_generated_planes_echoes_and_repeats(tmp_path):
    """One visit: a multi-echo cine stack, a sagittal and a coronal localiser with one description, two repeats."""
    template = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    image = template.pixel_array[:6, :5].astype(np.int64)  # X=6 rows, Y=5 columns of real signal
    folder = tmp_path / "in" / "5555555_20209_2_0"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    cells = [(c, t, s) for c in range(2) for t in range(3) for s in range(4)]
    z = [-5.0, 0.0, 2.5, 10.0]  # slice positions along the transverse normal (0, 0, 1)
    for n in rng.permutation(len(cells)):  # files written in random order and with meaningless names
        c, t, s = cells[n]
        _write(folder, f"f{n:03d}.dcm", template, image + 1000 * c + 100 * t + 10 * s,
               SeriesInstanceUID="1.9.1", SeriesDescription="cine stack", SeriesNumber=1,
               ImageOrientationPatient=TRANSVERSE, ImagePositionPatient=[3.0, 4.0, z[s]], EchoNumbers=c + 1,
               TriggerTime=25.0 * t, InstanceNumber=1 + t + 3 * s)  # fmt: skip
    for uid, number, iop in (("1.9.2", 2, SAGITTAL), ("1.9.3", 3, CORONAL)):
        _write(folder, f"loc{number}.dcm", template, image + number, SeriesInstanceUID=uid, SeriesNumber=number,
               SeriesDescription="Loc", ImageOrientationPatient=iop, ImagePositionPatient=[0, 0, 0])  # fmt: skip
    # repeats: the UID order (1.9.10 < 1.9.9) disagrees with the acquisition order (SeriesNumber 4, then 5)
    for uid, number in (("1.9.9", 4), ("1.9.10", 5)):
        _write(folder, f"rep{number}.dcm", template, image * number, SeriesInstanceUID=uid, SeriesNumber=number,
               SeriesDescription="Rep", ImageOrientationPatient=TRANSVERSE)  # fmt: skip
    report = convert_dicom(tmp_path / "in", tmp_path / "data.h5", FieldConfig(), progress=False)
    assert report.skipped == []
    with h5py.File(tmp_path / "data.h5", "r") as f:
        group = f["5555555/20209/2_0"]
        assert sorted(group) == [
            "primary_Loc_coronal_0",
            "primary_Loc_sagittal_0",
            "primary_Rep_transverse_0",
            "primary_Rep_transverse_1",
            "primary_cine_stack_transverse_0",
        ]
        assert group.attrs["n_series"] == 5 and set(group.attrs) == GROUP_ATTRS
        cine = group["primary_cine_stack_transverse_0"]
        assert cine.shape == (2, 3, 4, 6, 5) and cine.dtype == np.int16  # (C=echoes, T, S, X=rows, Y=cols)
        for c, t, s in cells:
            np.testing.assert_array_equal(cine[c, t, s], image + 1000 * c + 100 * t + 10 * s)
        assert cine.attrs["min_val"] == image.min() and cine.attrs["max_val"] == image.max() + 1000 + 200 + 30
        assert header(cine)["0020|0037"] == "1.0\\0.0\\0.0\\0.0\\1.0\\0.0"
        for key, number in (("primary_Loc_sagittal_0", 2), ("primary_Loc_coronal_0", 3)):
            check_series_attrs(group[key], (image + number).astype(np.int16)[None, None, None], "Loc", f"1.9.{number}")
        for key, number, uid in (("primary_Rep_transverse_0", 4, "1.9.9"), ("primary_Rep_transverse_1", 5, "1.9.10")):
            check_series_attrs(group[key], (image * number).astype(np.int16)[None, None, None], "Rep", uid)


def test_generated_planes_with_config(tmp_path):
    """meta.yaml-style config: multi_primary tags, auxiliary key, default_plane drops its own suffix only."""
    template = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    image = template.pixel_array[:4, :4]
    folder = tmp_path / "in" / "5555555_20209_2_0"
    folder.mkdir(parents=True)
    for uid, desc, iop in (("1.8.1", "A", TRANSVERSE), ("1.8.2", "A", SAGITTAL), ("1.8.3", "B", CORONAL),
                           ("1.8.4", "M", TRANSVERSE), ("1.8.5", "junk", TRANSVERSE)):  # fmt: skip
        _write(folder, f"{uid}.dcm", template, image, SeriesInstanceUID=uid, SeriesDescription=desc,
               SeriesNumber=int(uid[-1]), ImageOrientationPatient=iop)  # fmt: skip
    config = FieldConfig(
        primary_data=[["A", "A2"], "B"],
        primary_data_tags=["tagA", "tagB"],
        multi_primary=True,
        auxiliary_data=[["M"]],
        auxiliary_data_tags=["mask"],
        default_plane="transverse",
    )
    report = convert_dicom(tmp_path / "in", tmp_path / "data.h5", config, progress=False)
    assert [why for _, why in report.skipped] == ["description matches no primary_data/auxiliary_data entry"]
    with h5py.File(tmp_path / "data.h5", "r") as f:
        assert sorted(f["5555555/20209/2_0"]) == [
            "auxiliary_mask_0",
            "primary_tagA_0",
            "primary_tagA_sagittal_0",
            "primary_tagB_coronal_0",
        ]


# ---------------------------------------------------------------- real NIfTI (nibabel test data)


def test_nibabel_example4d_and_anatomical(tmp_path):
    src = tmp_path / "in"
    for eid, name in (("1000001", "example4d.nii.gz"), ("1000002", "anatomical.nii"), ("1000003", "functional.nii")):
        (src / eid).mkdir(parents=True)
        shutil.copy(NIB_DATA / name, src / eid / name)
    mapping = map_from_regex(src, r"^(?P<patient>\d{7})/", "20252", "2_0", "primary_T1")
    report = convert_nifti(mapping, tmp_path / "data.h5", progress=False)
    assert (report.groups, report.series, report.skipped) == (3, 3, [])
    with h5py.File(tmp_path / "data.h5", "r") as f:
        assert sorted(f) == ["1000001", "1000002", "1000003"]
        for eid, name in (
            ("1000001", "example4d.nii.gz"),
            ("1000002", "anatomical.nii"),
            ("1000003", "functional.nii"),
        ):
            img = nib.load(NIB_DATA / name)
            data = np.asanyarray(img.dataobj)  # (x, y, z[, t]) scaled when scl_slope is set (functional.nii)
            expected = np.transpose(data.reshape(data.shape + (1,) * (5 - data.ndim)), (4, 3, 2, 0, 1))
            group = f[f"{eid}/20252/2_0"]
            assert list(group) == ["primary_T1"]
            assert dict(group.attrs) == {
                **dict.fromkeys(("patientDICOMID", "studyDICOMID", "studyDesc", "aet", "host", "date"), ""),
                "n_series": 1,
            }
            desc = img.header["descrip"].item().split(b"\x00")[0].decode()
            check_series_attrs(group["primary_T1"], expected, desc, str(src / eid / name))
            tags = header(group["primary_T1"])
            np.testing.assert_allclose(json.loads(tags["affine"]), img.affine, atol=1e-6)
            assert json.loads(tags["pixdim"]) == pytest.approx(img.header["pixdim"][1:6].tolist())
            assert tags["qform_code"] == str(int(img.header["qform_code"])) and tags["descrip"] == desc
        ex4d = f["1000001/20252/2_0/primary_T1"]
        assert ex4d.shape == (1, 2, 24, 128, 96) and ex4d.dtype == np.int16
        assert ex4d.attrs["seriesDesc"] == "FSL3.3"  # descrip "FSL3.3\0 v2.25 ..." is a C string
        assert f["1000002/20252/2_0/primary_T1"].shape == (1, 1, 25, 33, 41)  # big-endian int16 stored native
        assert f["1000002/20252/2_0/primary_T1"].attrs["min_val"] == -610
        assert f["1000003/20252/2_0/primary_T1"].dtype == np.float64  # scl_slope applied


def test_nibabel_anatomical_canonical(tmp_path):
    mapping = [(NIB_DATA / "anatomical.nii", ("1000002", "20252", "2_0", "primary"))]
    convert_nifti(mapping, tmp_path / "data.h5", canonical=True, progress=False)
    canonical = nib.as_closest_canonical(nib.load(NIB_DATA / "anatomical.nii"))
    with h5py.File(tmp_path / "data.h5", "r") as f:
        stored = f["1000002/20252/2_0/primary"][()]
        np.testing.assert_array_equal(stored[0, 0], np.transpose(np.asanyarray(canonical.dataobj), (2, 0, 1)))
        assert json.loads(header(f["1000002/20252/2_0/primary"])["affine"])[0][0] == 2.0  # L→R flipped


def test_failed_group_write_leaves_no_partial_group(tmp_path):
    """A series HDF5 cannot store (a description with an embedded NUL) drops its whole group, and only it."""
    from Engineering.data.convert.writer import H5Writer, Series

    def series(key: str, desc: str) -> Series:
        return Series(key, np.zeros((1, 1, 1, 2, 2), ">i2"), desc, {"mag_0": "1"}, {"mag_0": {}})

    with H5Writer(tmp_path / "data.h5") as writer:
        writer.write_group("1000001/20209/2_0", {"date": ""}, [series("primary_0", "ok")])
        with pytest.raises(ValueError, match="embedded NULL"):
            writer.write_group("1000002/20209/2_0", {}, [series("primary_0", "ok"), series("primary_1", "a\0b")])
        with pytest.raises(ValueError, match="embedded NULL"):
            writer.write_group("1000001/20209/3_0", {}, [series("primary_0", "a\0b")])
    with h5py.File(tmp_path / "data.h5", "r") as f:
        items: list[str] = []
        f.visit(items.append)
        assert items == ["1000001", "1000001/20209", "1000001/20209/2_0", "1000001/20209/2_0/primary_0"]
        assert f["1000001/20209/2_0/primary_0"].dtype.isnative
