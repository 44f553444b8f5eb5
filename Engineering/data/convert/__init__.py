"""Bring your own data: DICOM (folders or UK Biobank zips) and NIfTI to the pipeline's input HDF5.

Modules: ``config`` (FieldConfig, series keys, planes), ``writer`` (H5Writer, ConversionReport, atomic writes),
``dicom`` (convert_dicom), ``nifti`` (convert_nifti).
"""
