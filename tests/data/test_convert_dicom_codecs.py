"""Compressed DICOM decodes (pylibjpeg with its libjpeg and openjpeg plugins), checked on pydicom's shipped files.

Greyscale files of each transfer syntax go through the converter; lossless ones must give the uncompressed
reference bit for bit. The syntaxes pydicom ships only in colour (JPEG baseline, JPEG lossless SV1) are checked at
the decoder against the same image stored RLE-lossless, and the converter refuses colour with a reason.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from Engineering.data.convert.config import FieldConfig
from Engineering.data.convert.dicom import convert_dicom
from tests.data.test_convert_realfiles import pydicom_file

# file -> (transfer syntax, lossless reference file or None)
GREYSCALE = {
    "JPGExtended.dcm": ("1.2.840.10008.1.2.4.51", None),  # JPEG extended, 12 bit
    "MR_small_jpeg_ls_lossless.dcm": ("1.2.840.10008.1.2.4.80", "MR_small.dcm"),  # JPEG-LS lossless
    "JPEGLSNearLossless_16.dcm": ("1.2.840.10008.1.2.4.81", None),  # JPEG-LS near-lossless
    "MR_small_jp2klossless.dcm": ("1.2.840.10008.1.2.4.90", "MR_small.dcm"),  # JPEG 2000 lossless
    "693_J2KI.dcm": ("1.2.840.10008.1.2.4.91", None),  # JPEG 2000
}
# colour files against SC_rgb_rle.dcm: (transfer syntax, max abs error, max mean abs error)
COLOUR = {
    "SC_rgb_jpeg_dcmtk.dcm": ("1.2.840.10008.1.2.4.50", 8, 1.0),  # JPEG baseline (YBR_FULL)
    "SC_rgb_dcmtk_+eb+cr.dcm": ("1.2.840.10008.1.2.4.50", 2, 0.5),  # JPEG baseline (RGB)
    "SC_rgb_jpeg_gdcm.dcm": ("1.2.840.10008.1.2.4.70", 0, 0.0),  # JPEG lossless SV1
    "SC_rgb_jls_lossy_line.dcm": ("1.2.840.10008.1.2.4.81", 2, 1.0),  # JPEG-LS near-lossless (NEAR 2)
    "SC_rgb_gdcm_KY.dcm": ("1.2.840.10008.1.2.4.91", 0, 0.0),  # JPEG 2000 (lossless coding)
}


def _expected(ds: pydicom.Dataset) -> np.ndarray:
    pixels = ds.pixel_array
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    return pixels * np.float32(slope) + np.float32(intercept) if (slope, intercept) != (1.0, 0.0) else pixels


def test_every_greyscale_transfer_syntax_converts(tmp_path):
    eids = {}
    for n, (name, (syntax, _)) in enumerate(GREYSCALE.items()):
        ds = pydicom.dcmread(pydicom_file(name))
        assert ds.file_meta.TransferSyntaxUID == syntax and ds.file_meta.TransferSyntaxUID.is_compressed
        eids[name] = f"200000{n}"
        folder = tmp_path / "in" / f"{eids[name]}_20209_2_0"
        folder.mkdir(parents=True)
        if "SeriesInstanceUID" in ds:
            shutil.copy(pydicom_file(name), folder / name)
        else:  # the converter groups by series: add the tag, the compressed pixel stream stays as shipped
            ds.SeriesInstanceUID = generate_uid()
            ds.save_as(folder / name, enforce_file_format=True)
    report = convert_dicom(tmp_path / "in", tmp_path / "data.h5", FieldConfig(), progress=False)
    assert report.skipped == [] and report.series == len(GREYSCALE)
    with h5py.File(tmp_path / "data.h5", "r") as f:
        for name, (_, reference) in GREYSCALE.items():
            group = f[f"{eids[name]}/20209/2_0"]
            (stored,) = group.values()
            expected = _expected(pydicom.dcmread(pydicom_file(reference or name)))
            np.testing.assert_array_equal(stored[()], expected[None, None, None], err_msg=name)
            assert stored.shape[-2:] == expected.shape[-2:] and np.ptp(stored[()]) > 0, name


@pytest.mark.parametrize("name", list(COLOUR))
def test_colour_only_syntaxes_decode_close_to_the_lossless_image(name):
    syntax, max_err, mean_err = COLOUR[name]
    ds = pydicom.dcmread(pydicom_file(name))
    assert ds.file_meta.TransferSyntaxUID == syntax
    reference = pydicom.dcmread(pydicom_file("SC_rgb_rle.dcm")).pixel_array.astype(np.int32)
    error = np.abs(ds.pixel_array.astype(np.int32) - reference)  # pixel_array is RGB (YBR converted)
    assert error.max() <= max_err and error.mean() <= mean_err


def test_converter_refuses_colour_with_a_reason(tmp_path):
    folder = tmp_path / "in" / "3000000_20209_2_0"
    folder.mkdir(parents=True)
    shutil.copy(pydicom_file("SC_rgb_jpeg_gdcm.dcm"), folder / "rgb.dcm")
    shutil.copy(pydicom_file("MR_small_jpeg_ls_lossless.dcm"), folder / "mr.dcm")
    report = convert_dicom(tmp_path / "in", tmp_path / "data.h5", FieldConfig(), progress=False)
    reasons = {Path(k).name: v for k, v in report.skipped}
    assert reasons == {
        "rgb.dcm": "not converted: colour image (SamplesPerPixel 3, RGB); the pipeline takes greyscale images"
    }
    assert report.series == 1
