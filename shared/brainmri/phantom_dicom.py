"""Synthetic DICOM MR series written with pydicom - for tests, demos and benchmarks.

The series carry realistic tags, including *fake* patient identifiers, so that de-identification
and "no PHI in logs or responses" can be tested against something that looks real. Slices are
phantoms (:mod:`brainmri.phantom`); the lesion is strongest at the centre slice.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from brainmri.phantom import generate_phantom


@dataclass(frozen=True, slots=True)
class FakePatient:
    """Identifying values that must never leak; deliberately distinctive strings."""

    name: str = "Doe^Jane^Quincy"
    patient_id: str = "PID-8675309"
    birth_date: str = "19700101"
    sex: str = "F"
    accession: str = "ACC-424242"
    institution: str = "Saint Example Hospital"
    referring: str = "Referrer^Robert"
    address: str = "1 Identifying Street, Sampletown"


def _file_dataset(
    pixels: np.ndarray,
    *,
    patient: FakePatient,
    study_uid: str,
    series_uid: str,
    instance: int,
    position: float,
    photometric: str,
    slope: float,
    intercept: float,
    window: tuple[float, float] | None,
) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    # pydicom builds an in-memory dataset from None, but types the argument as a path/buffer
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)  # type: ignore[arg-type]
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid()
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.PatientAddress = patient.address
    ds.AccessionNumber = patient.accession
    ds.InstitutionName = patient.institution
    ds.ReferringPhysicianName = patient.referring
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20260115"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.StudyDescription = f"MRI BRAIN {patient.name}"
    ds.SeriesDescription = "AX T1 POST"
    ds.Modality = "MR"
    ds.Manufacturer = "PhantomWorks"
    ds.StudyID = "1"
    ds.SeriesNumber = 3
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [-100.0, -100.0, float(position)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.9, 0.9]
    ds.SliceThickness = 5.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype("<u2").tobytes()
    return ds


def phantom_series(
    class_name: str,
    *,
    n_slices: int = 9,
    size: int = 64,
    seed: int = 0,
    photometric: str = "MONOCHROME2",
    slope: float = 1.0,
    intercept: float = 0.0,
    window: tuple[float, float] | None = None,
    patient: FakePatient | None = None,
    series_uid: str | None = None,
    sizes: Sequence[int] | None = None,
) -> list[FileDataset]:
    """``n_slices`` single-frame MR instances; stored values are 12-bit.

    Instance numbers follow position, but the list is returned in a scrambled order so readers
    must sort. ``sizes`` (one per slice) makes a deliberately inconsistent series.
    """
    patient = patient or FakePatient()
    study_uid, series_uid = generate_uid(), series_uid or generate_uid()
    centre = n_slices // 2
    datasets = []
    for index in range(n_slices):
        side = sizes[index] if sizes else size
        lesion_seed = seed if abs(index - centre) <= 1 else seed + 1_000 + index
        grey = (
            generate_phantom(
                class_name if abs(index - centre) <= 1 else "no_tumor", seed=lesion_seed, size=side
            ).astype(np.float64)
            / 255.0
        )
        if photometric == "MONOCHROME1":
            grey = 1.0 - grey
        stored = np.round((grey * 4000.0 - intercept) / slope).clip(0, 4095)
        datasets.append(
            _file_dataset(
                stored,
                patient=patient,
                study_uid=study_uid,
                series_uid=series_uid,
                instance=index + 1,
                position=index * 5.0,
                photometric=photometric,
                slope=slope,
                intercept=intercept,
                window=window,
            )
        )
    order = np.random.default_rng(seed).permutation(n_slices)
    return [datasets[i] for i in order]


def multiframe_dataset(
    class_name: str,
    *,
    n_frames: int = 5,
    size: int = 64,
    seed: int = 0,
    patient: FakePatient | None = None,
) -> FileDataset:
    """One enhanced-style multi-frame object with per-frame positions (frames stored reversed)."""
    patient = patient or FakePatient()
    frames = [
        generate_phantom(
            class_name if i == n_frames // 2 else "no_tumor", seed=seed + i, size=size
        ).astype(np.float64)
        / 255.0
        * 4000.0
        for i in range(n_frames)
    ]
    ds = _file_dataset(
        frames[0],
        patient=patient,
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        instance=1,
        position=0.0,
        photometric="MONOCHROME2",
        slope=1.0,
        intercept=0.0,
        window=None,
    )
    stored = list(reversed(range(n_frames)))
    ds.NumberOfFrames = n_frames
    ds.PixelData = np.stack([frames[i] for i in stored]).round().astype("<u2").tobytes()
    groups = []
    for i in stored:
        plane = Dataset()
        plane.ImagePositionPatient = [-100.0, -100.0, i * 5.0]
        group = Dataset()
        group.PlanePositionSequence = DicomSequence([plane])
        groups.append(group)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(groups)
    return ds


def dataset_bytes(ds: FileDataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def zip_series(datasets: Sequence[FileDataset], *, extra: dict[str, bytes] | None = None) -> bytes:
    """Zip instances as ``series/IMG00001.dcm`` ...; ``extra`` adds arbitrary members."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for number, ds in enumerate(datasets, start=1):
            archive.writestr(f"series/IMG{number:05d}.dcm", dataset_bytes(ds))
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()
