"""Files a user uploads to the explorer, turned into an HDF5 file in the project's layout.

A NIfTI file goes through the NIfTI converter (same axes and attributes as ``convert_nifti.py``) into a one-series
file under the subject ID ``upload``; an HDF5 file must already hold exactly one series
(``pid/field/instance/series``). Either way the series is then read by the run's own dataset and transforms, so
an upload is cropped, padded and normalised exactly like the run's data.
"""

from __future__ import annotations

from pathlib import Path

import h5py

from Engineering.data.convert.nifti import convert_nifti
from Engineering.errors import DataError

UPLOAD_SUBJECT = "upload"
NIFTI_SUFFIXES = (".nii", ".nii.gz")
HDF5_SUFFIXES = (".h5", ".hdf5")
SERIES_DEPTH = 4  # pid/field/instance/series


def series_keys(path: Path) -> list[str]:
    """Every dataset of an HDF5 file at the series depth, sorted; a file h5py cannot open is a DataError."""
    keys: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and name.count("/") == SERIES_DEPTH - 1:
            keys.append(name)

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError as err:
        raise DataError(f"upload {path.name} is not a readable HDF5 file ({err})") from None
    return sorted(keys)


def upload_to_h5(path: str | Path, work_dir: Path, target: tuple[str, str, str]) -> tuple[Path, str]:
    """The HDF5 file and subject ID to read an uploaded file from.

    Args:
        path: the uploaded file (.nii, .nii.gz, .h5 or .hdf5).
        work_dir: folder for the converted file of a NIfTI upload.
        target: (field, instance, series key) a NIfTI upload is stored under; the run's own series name, so that
            the run's series selection keeps it.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        out = work_dir / f"{UPLOAD_SUBJECT}.h5"
        convert_nifti([(path, (UPLOAD_SUBJECT, *target))], out, progress=False)
        return out, UPLOAD_SUBJECT
    if name.endswith(HDF5_SUFFIXES):
        keys = series_keys(path)
        if len(keys) != 1:
            listed = f": {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}" if keys else ""
            raise DataError(
                f"upload {path.name} holds {len(keys)} series{listed}; expected exactly one "
                "dataset at pid/field/instance/series"
            )
        return path, keys[0].split("/", 1)[0]
    raise DataError(
        f"upload {path.name}: expected a NIfTI file ({', '.join(NIFTI_SUFFIXES)}) or an HDF5 file "
        f"({', '.join(HDF5_SUFFIXES)}) with one series"
    )


__all__ = ["UPLOAD_SUBJECT", "series_keys", "upload_to_h5"]
