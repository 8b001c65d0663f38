"""PHI never leaves the upload: a series full of identifying values goes through the whole
services stack, and none of PS3.15 Table E.1-1's attributes or values appear in the object
store, the database, the logs or any API response. Identifiers and private tags nested inside
the sequences de-identification keeps (functional groups, LUTs) are stripped too, while the
geometry and LUT values decoding needs survive."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from sqlalchemy import select

from brainmri.db.models import Job, Prediction
from brainmri.db.session import session_scope
from brainmri.imaging.deid import (
    BASIC_PROFILE_ATTRIBUTES,
    FUNCTIONAL_GROUPS,
    KEEP,
    KEEP_IN_ITEMS,
    REPLACED_UIDS,
)
from brainmri.imaging.dicom import SliceSelection
from brainmri.imaging.ingest import sanitize_upload
from brainmri.imaging.inputs import decode_input
from brainmri.imaging.limits import InputLimits
from brainmri.phantom_dicom import FakePatient, dataset_bytes, multiframe_dataset, phantom_series
from brainmri_api.main import create_app
from tests.helpers import pydicom_file
from tests.infra import S3Server, WorkerProcess, services_env, settings_from_env, wait_for_job
from tests.shared.dicom_faults import lut_item, with_raw_value

KEY = "phi-key-0123456789abcdef"
HEADERS = {"X-API-Key": KEY}
PATIENT = FakePatient(
    name="Zyxwv^Quorra^Eleanor",
    patient_id="MRN-99887766",
    birth_date="19450704",
    accession="ACC-55511199",
    institution="Quorra Memorial Infirmary",
    referring="Referrer^Octavia",
    address="77 Privacy Lane, Identtown",
)
EXTRA_VALUES = {
    "OtherPatientIDs": "OTHER-ID-31337",
    "PatientComments": "allergic to quorrazine",
    "AdditionalPatientHistory": "history of quorraitis",
    "OperatorsName": "Operator^Ulrich",
    "StationName": "QUORRA-MR-07",
    "DeviceSerialNumber": "SN-0042-QUORRA",
    "StudyID": "STUDY-7741",
}
PRIVATE_VALUE = "PRIVATE-MRN-99887766"


def identifying_series() -> tuple[list[Dataset], list[str]]:
    series = phantom_series("glioma", n_slices=5, size=64, patient=PATIENT)
    for ds in series:
        for keyword, value in EXTRA_VALUES.items():
            setattr(ds, keyword, value)
        block = ds.private_block(0x0011, "QUORRA PACS", create=True)
        block.add_new(0x01, "LO", PRIVATE_VALUE)
        referenced = Dataset()
        referenced.PatientName = PATIENT.name
        referenced.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        ds.ReferencedPatientSequence = DicomSequence([referenced])
        measures = Dataset()  # a kept sequence whose item also carries identifiers
        measures.PixelSpacing = [0.9, 0.9]
        measures.PatientName = PATIENT.name
        measures.PatientID = PATIENT.patient_id
        measures.private_block(0x0011, "QUORRA PACS", create=True).add_new(
            0x01, "LO", PRIVATE_VALUE
        )
        group = Dataset()
        group.PixelMeasuresSequence = DicomSequence([measures])
        ds.SharedFunctionalGroupsSequence = DicomSequence([group])
    originals = sorted({str(ds[k].value) for ds in series for k in REPLACED_UIDS if k in ds})
    return series, originals


def secrets_of(originals: list[str]) -> list[str]:
    values = [
        PATIENT.name,
        "Zyxwv",
        "Quorra",
        PATIENT.patient_id,
        PATIENT.birth_date,
        PATIENT.accession,
        PATIENT.institution,
        PATIENT.referring,
        PATIENT.address,
        PRIVATE_VALUE,
        *EXTRA_VALUES.values(),
    ]
    return values + originals


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def run(
    postgres_url: str,
    redis_url: str,
    s3: S3Server,
    service_bucket: str,
    platform_bundle: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict:
    base = tmp_path_factory.mktemp("phi")
    env = services_env(
        postgres_url=postgres_url,
        redis_url=redis_url,
        s3=s3,
        bucket=service_bucket,
        data_dir=base / "data",
        bundle=platform_bundle,
        api_keys=f"{KEY}:admin",
        extra={"BRAINMRI_LOG_LEVEL": "DEBUG"},
    )
    worker = WorkerProcess(env, base / "worker.log").start()
    capture = Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    series, originals = identifying_series()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for number, ds in enumerate(series):
            archive.writestr(f"{PATIENT.name}/{PATIENT.patient_id}_{number}.dcm", dataset_bytes(ds))
    responses: list[str] = []
    try:
        with TestClient(create_app(settings_from_env(env))) as client:
            ids = []
            for name, data in (
                (f"{PATIENT.name}.zip", buffer.getvalue()),
                (f"{PATIENT.patient_id}.dcm", dataset_bytes(series[0])),
            ):
                response = client.post(
                    "/v1/jobs/predict",
                    headers=HEADERS,
                    files={"file": (name, data, "application/octet-stream")},
                )
                assert response.status_code == 202, response.text
                responses.append(response.text)
                ids.append(response.json()["job_id"])
            for job_id in ids:
                job = wait_for_job(client, job_id, HEADERS)
                assert job["status"] == "succeeded", job
                responses.append(client.get(f"/v1/jobs/{job_id}", headers=HEADERS).text)
                for name in job["links"]["artifacts"]:
                    responses.append(
                        repr(client.get(job["links"]["artifacts"][name], headers=HEADERS).content)
                    )
            responses.append(client.get("/v1/jobs", headers=HEADERS).text)
            legacy = client.post(
                "/predict?save_cam=true",
                headers=HEADERS,
                files={"file": ("x.dcm", dataset_bytes(series[1]))},
            )
            assert legacy.status_code == 200
            responses.append(legacy.text)
            ids.append(legacy.json()["job_id"])
    finally:
        root.removeHandler(capture)
        worker.stop()
    return {
        "ids": ids,
        "env": env,
        "originals": originals,
        "responses": responses,
        "logs": "\n".join(capture.lines) + (base / "worker.log").read_text(errors="replace"),
        "settings": settings_from_env(env),
    }


def _stored_objects(run: dict, s3: S3Server, bucket: str) -> dict[str, bytes]:
    client = s3.client()
    objects = {}
    for job_id in run["ids"]:
        for prefix in (f"uploads/{job_id}/", f"artifacts/{job_id}/"):
            for key in s3.keys(bucket, prefix):
                response = client.get_object(bucket, key)
                objects[key] = response.read()
                response.close()
    return objects


def _dicoms(objects: dict[str, bytes]) -> list[bytes]:
    found = []
    for key, data in objects.items():
        if key.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                found += [archive.read(name) for name in archive.namelist()]
        elif key.endswith(".dcm"):
            found.append(data)
    return found


def test_object_store_holds_no_identifiers(run: dict, s3: S3Server, service_bucket: str) -> None:
    objects = _stored_objects(run, s3, service_bucket)
    dicoms = _dicoms(objects)
    assert len(dicoms) == 5 + 1 + 1
    for data in [*objects.values(), *dicoms]:
        for value in secrets_of(run["originals"]):
            assert value.encode() not in data, value
    for data in dicoms:
        assert data[:128] == b"\0" * 128  # no polyglot preamble
        ds = pydicom.dcmread(io.BytesIO(data))
        present = [k for k in BASIC_PROFILE_ATTRIBUTES if k in ds and k not in REPLACED_UIDS]
        assert present == []
        assert not any(element.tag.is_private for element in ds.iterall())
        for keyword in REPLACED_UIDS:
            if keyword in ds:
                assert str(ds[keyword].value).startswith("2.25.")
                assert str(ds[keyword].value) not in run["originals"]
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"


def test_uids_stay_consistent_within_an_upload(
    run: dict, s3: S3Server, service_bucket: str
) -> None:
    zips = [d for k, d in _stored_objects(run, s3, service_bucket).items() if k.endswith(".zip")]
    with zipfile.ZipFile(io.BytesIO(zips[0])) as archive:
        series = [pydicom.dcmread(io.BytesIO(archive.read(n))) for n in archive.namelist()]
    assert len({ds.SeriesInstanceUID for ds in series}) == 1
    assert len({ds.StudyInstanceUID for ds in series}) == 1
    assert len({ds.SOPInstanceUID for ds in series}) == 5


def test_database_holds_no_identifiers(run: dict) -> None:
    with session_scope(run["settings"].resolved_database_url) as session:
        jobs = session.scalars(select(Job).where(Job.id.in_(run["ids"]))).all()
        rows = session.scalars(select(Prediction).where(Prediction.job_id.in_(run["ids"]))).all()
        dump = json.dumps(
            [{c.name: getattr(o, c.name) for c in o.__table__.columns} for o in [*jobs, *rows]],
            default=str,
        )
    assert len(jobs) == 3
    for value in secrets_of(run["originals"]):
        assert value not in dump, value


def test_logs_and_responses_hold_no_identifiers(run: dict) -> None:
    text = run["logs"] + "\n".join(run["responses"])
    assert "job succeeded" in run["logs"]  # the logs were really captured
    for value in secrets_of(run["originals"]):
        assert value not in text, value


NESTED_NAME = "Doe^Nested^Quincy"
NESTED_ID = "PID-8675309"
NESTED_PRIVATE = "NESTED-PRIVATE-PHI"
ORIENTATION = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def _with_phi(item: Dataset) -> Dataset:
    """``item`` with a patient name, ID and private tag, as some vendors write them."""
    item.PatientName = NESTED_NAME
    item.PatientID = NESTED_ID
    item.private_block(0x0011, "ACME PACS", create=True).add_new(0x01, "LO", NESTED_PRIVATE)
    return item


def _assert_no_phi(upload: bytes, stored: bytes) -> pydicom.Dataset:
    for value in (NESTED_NAME, NESTED_ID, NESTED_PRIVATE):
        assert value.encode() in upload  # the upload really carried it
        assert value.encode() not in stored, value
    ds = pydicom.dcmread(io.BytesIO(stored))
    assert not any(element.tag.is_private for element in ds.iterall())
    nested = {element.keyword for element in ds.iterall()} & set(BASIC_PROFILE_ATTRIBUTES)
    assert nested <= set(REPLACED_UIDS)
    return ds


def test_identifiers_inside_kept_sequences_are_not_stored() -> None:
    ds = phantom_series("glioma", n_slices=1, size=64)[0]
    inverse = [4095 - value for value in range(4096)]
    modality = _with_phi(lut_item([4096, 0, 16], inverse))
    modality.ModalityLUTType = "US"
    modality.LUTExplanation = NESTED_NAME  # free text inside a kept item
    ds.ModalityLUTSequence = DicomSequence([modality])
    curve = [round((value / 4095) ** 0.5 * 65535) for value in range(4096)]
    ds.VOILUTSequence = DicomSequence([_with_phi(lut_item([4096, 0, 16], curve))])
    measures = _with_phi(Dataset())
    measures.PixelSpacing = [0.5, 0.5]
    measures.SliceThickness = 5.0
    plane = _with_phi(Dataset())
    plane.ImageOrientationPatient = ORIENTATION
    group = _with_phi(Dataset())
    group.PixelMeasuresSequence = DicomSequence([measures])
    group.PlaneOrientationSequence = DicomSequence([plane])
    ds.SharedFunctionalGroupsSequence = DicomSequence([group])
    upload = dataset_bytes(ds)

    clean = sanitize_upload(upload, InputLimits(), SliceSelection())
    stored = _assert_no_phi(upload, clean.data)

    kept_group = stored.SharedFunctionalGroupsSequence[0]
    kept_measures = kept_group.PixelMeasuresSequence[0]
    assert list(kept_measures.PixelSpacing) == [0.5, 0.5] and kept_measures.SliceThickness == 5.0
    assert list(kept_group.PlaneOrientationSequence[0].ImageOrientationPatient) == ORIENTATION
    assert list(stored.ModalityLUTSequence[0].LUTDescriptor) == [4096, 0, 16]
    assert list(stored.ModalityLUTSequence[0].LUTData) == inverse
    assert stored.ModalityLUTSequence[0].ModalityLUTType == "US"
    assert list(stored.VOILUTSequence[0].LUTData) == curve
    # The LUTs still shape the pixels: what is stored decodes exactly like the upload, which
    # differs from the same pixels without the LUTs.
    decoded = decode_input(upload).slices[0]
    np.testing.assert_allclose(decode_input(clean.data).slices[0], decoded, atol=1e-6)
    del ds.ModalityLUTSequence, ds.VOILUTSequence
    assert not np.allclose(decode_input(dataset_bytes(ds)).slices[0], decoded, atol=0.05)


@pytest.mark.parametrize(
    ("keyword", "raw"),
    [
        ("PixelSpacing", b"DOE^JANE"),  # DS: a name where two numbers belong
        ("SliceThickness", b"PID-4242"),  # DS
        ("InstanceNumber", b"Jane"),  # IS
        ("RescaleType", b"Doe^Jane"),  # LO, defined terms only (HU, US, ...)
        ("PatientOrientation", b"Doe^Jane"),  # CS: code strings are upper-case codes
        # Upper-case names fit the code-string alphabet: only the defined values pass.
        ("PatientOrientation", b"DOE\\JANE"),  # CS: letters A P R L H F only
        ("RescaleType", b"JANE DOE"),  # LO: HU, US, OD, ...
        ("VOILUTFunction", b"JANE DOE"),  # CS: LINEAR, LINEAR_EXACT, SIGMOID
        ("Modality", b"JANE DOE"),  # CS: MR, CT, ... and returned in job results
    ],
)
def test_a_name_typed_into_a_kept_attribute_is_not_stored(keyword: str, raw: bytes) -> None:
    """Every kept string attribute is a number, a code or a UID: a value that is not one is
    dropped instead of being stored unvetted, and the slice still decodes."""
    ds = phantom_series("glioma", n_slices=1, size=64)[0]
    ds.PixelSpacing, ds.SliceThickness, ds.InstanceNumber = [0.5, 0.5], 5.0, 1
    ds.RescaleType, ds.PatientOrientation = "US", ["L", "P"]
    ds.VOILUTFunction, ds.Modality = "LINEAR", "MR"
    upload = with_raw_value(ds, keyword, raw)
    assert raw in upload

    clean = sanitize_upload(upload, InputLimits(), SliceSelection())

    assert raw not in clean.data
    stored = pydicom.dcmread(io.BytesIO(clean.data))
    assert keyword not in stored
    others = {"PixelSpacing", "SliceThickness", "InstanceNumber", "RescaleType", "Modality"}
    others -= {keyword}
    assert all(other in stored for other in others)  # well-formed neighbours are kept
    np.testing.assert_allclose(
        decode_input(clean.data).slices[0], decode_input(upload).slices[0], atol=1e-6
    )


def test_image_type_keeps_only_its_enumerated_values() -> None:
    """Values 3 on of ImageType are vendor-defined codes nothing reads: not kept."""
    ds = phantom_series("glioma", n_slices=1, size=64)[0]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "JANE DOE", "M", "ND"]
    stored = pydicom.dcmread(
        io.BytesIO(sanitize_upload(dataset_bytes(ds), InputLimits(), SliceSelection()).data)
    )
    assert list(stored.ImageType) == ["ORIGINAL", "PRIMARY"]
    ds.ImageType = ["JANE DOE", "PRIMARY"]
    stored = pydicom.dcmread(
        io.BytesIO(sanitize_upload(dataset_bytes(ds), InputLimits(), SliceSelection()).data)
    )
    assert "ImageType" not in stored


def test_reported_codes_are_only_defined_values() -> None:
    """What a job result reports of the series (modality) comes from the upload as decoded;
    a name there must not reach the result, even before de-identification."""
    ds = phantom_series("glioma", n_slices=1, size=64)[0]
    ds.Modality = "JANE DOE"
    assert decode_input(dataset_bytes(ds)).details["modality"] is None
    ds.Modality = "MR"
    assert decode_input(dataset_bytes(ds)).details["modality"] == "MR"


def test_identifiers_inside_per_frame_groups_are_not_stored() -> None:
    ds = multiframe_dataset("glioma", n_frames=5, size=64)
    for group in ds.PerFrameFunctionalGroupsSequence:
        _with_phi(group)
        _with_phi(group.PlanePositionSequence[0])
    upload = dataset_bytes(ds)
    every_frame = SliceSelection("middle_k", k=5)

    clean = sanitize_upload(upload, InputLimits(), every_frame)
    stored = _assert_no_phi(upload, clean.data)

    positions = [
        list(group.PlanePositionSequence[0].ImagePositionPatient)
        for group in stored.PerFrameFunctionalGroupsSequence
    ]
    assert positions == [
        list(group.PlanePositionSequence[0].ImagePositionPatient)
        for group in ds.PerFrameFunctionalGroupsSequence
    ]
    # Frames are stored in reverse: the same order after decoding proves the positions work.
    decoded = decode_input(upload, dicom_selection=every_frame).slices
    for kept, original in zip(
        decode_input(clean.data, dicom_selection=every_frame).slices, decoded, strict=True
    ):
        np.testing.assert_allclose(kept, original, atol=1e-6)


def test_elements_encoded_against_their_keyword_are_not_stored() -> None:
    """A kept value attribute sent as a sequence could nest anything; a kept sequence sent as
    text is not geometry. Both are dropped rather than copied."""
    ds = phantom_series("glioma", n_slices=1, size=64)[0]
    ds.add_new(Tag("SliceLocation"), "SQ", DicomSequence([_with_phi(Dataset())]))
    ds.add_new(Tag("SharedFunctionalGroupsSequence"), "LO", NESTED_ID)
    upload = dataset_bytes(ds)

    clean = sanitize_upload(upload, InputLimits(), SliceSelection())
    stored = _assert_no_phi(upload, clean.data)

    assert "SliceLocation" not in stored and "SharedFunctionalGroupsSequence" not in stored
    assert list(stored.ImageOrientationPatient) == ORIENTATION


def test_every_kept_sequence_has_its_own_allow_list() -> None:
    """A sequence keyword added to an allow-list without one for its items is never copied."""
    kept = {*KEEP, *FUNCTIONAL_GROUPS, *(k for allowed in KEEP_IN_ITEMS.values() for k in allowed)}
    sequences = {keyword for keyword in kept if dictionary_VR(Tag(keyword)) == "SQ"}
    assert sequences == set(KEEP_IN_ITEMS)


#: What a stored object may hold at any depth besides the allow-lists: the de-identification
#: record (PatientIdentityRemoved, the method and its code sequence).
DEID_RECORD = (
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "CodeValue",
    "CodingSchemeDesignator",
    "CodeMeaning",
)


@pytest.mark.parametrize(
    "name",
    [
        "MR_small.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "MR_small_RLE.dcm",
        "CT_small.dcm",  # 179 private elements
        "liver_1frame.dcm",  # enhanced CT: shared and per-frame functional groups
    ],
)
def test_scanner_files_keep_their_pixels_and_only_allowed_attributes(name: str) -> None:
    """pydicom's bundled scanner files decode the same after de-identification, and hold only
    allow-listed attributes at every depth. The big-endian one could not be saved (HTTP 500)."""
    upload = pydicom_file(name)
    clean = sanitize_upload(upload, InputLimits(), SliceSelection())
    np.testing.assert_allclose(
        decode_input(clean.data).slices[0], decode_input(upload).slices[0], atol=1e-6
    )
    stored = pydicom.dcmread(io.BytesIO(clean.data))
    allowed = {*KEEP, *KEEP_IN_ITEMS, *REPLACED_UIDS, *DEID_RECORD}
    allowed |= {keyword for keywords in KEEP_IN_ITEMS.values() for keyword in keywords}
    assert {element.keyword for element in stored.iterall()} <= allowed
    assert not any(element.tag.is_private for element in stored.iterall())
