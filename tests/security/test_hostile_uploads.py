"""Hostile uploads against the real API: each gets its exact status, nothing is left behind,
and the API process's memory stays bounded (decoding happens in capped child processes)."""

from __future__ import annotations

import io
import json
import resource
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from brainmri.config import Settings
from brainmri.db.models import Job
from brainmri.db.session import session_scope
from brainmri.phantom import generate_phantom, phantom_png
from brainmri.phantom_dicom import dataset_bytes, phantom_series, zip_series
from brainmri_api.main import create_app
from tests.conftest import make_bundle
from tests.helpers import (
    encode,
    grey_image,
    png_header_only,
    png_text_bomb,
    zip_bomb,
    zip_bytes,
    zip_with_symlink,
)
from tests.shared.dicom_faults import MALFORMED_VALUES, malformed_dicom

KEY = "hostile-key-0123456789abcdef"
HEADERS = {"X-API-Key": KEY}


@dataclass
class Api:
    client: TestClient
    settings: Settings

    def objects(self) -> list[str]:
        root = self.settings.data_dir / "objects" / "uploads"
        return sorted(str(p) for p in root.rglob("*") if p.is_file()) if root.exists() else []

    def jobs(self) -> int:
        with session_scope(self.settings.resolved_database_url) as session:
            return int(session.scalar(select(func.count()).select_from(Job)) or 0)

    def messages(self) -> int:
        folder = self.settings.broker_spool_dir / "queue"
        return len(list(folder.iterdir())) if folder.exists() else 0

    def state(self) -> tuple[list[str], int, int]:
        return self.objects(), self.jobs(), self.messages()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    base = tmp_path_factory.mktemp("hostile")
    make_bundle(base / "bundle", img_size=64)
    settings = Settings(
        data_dir=base / "data",
        model_dir=base / "bundle",
        api_keys=f"{KEY}:user",
        max_tiff_pages=4,
        upload_decode_timeout_seconds=60,
    )
    from brainmri.db.migrate import upgrade

    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings)) as client:
        yield Api(client, settings)


def _huge_length_dicom() -> bytes:
    data = bytearray(dataset_bytes(phantom_series("glioma", n_slices=1)[0]))
    # Find PatientName (0010,0010, VR PN) and declare a 4 GB-ish value length.
    tag = b"\x10\x00\x10\x00PN"
    at = data.index(tag)
    data[at + 6 : at + 8] = b"\xff\xff"  # PN has a 2-byte length: make it 65535 > the rest
    explicit_ob = b"\x10\x00\x10\x00OB\x00\x00\xf0\xff\xff\xff"  # and an OB with 0xFFFFFFF0
    return bytes(data[:at]) + explicit_ob + bytes(data[at + 8 : at + 40])


def _cmyk() -> bytes:
    return encode(Image.new("CMYK", (64, 64), (10, 200, 30, 40)), "JPEG")


def _palette_with_transparency() -> bytes:
    image = Image.new("P", (64, 64), 1)
    image.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    return encode(image, transparency=0)


def _exif_rotated() -> bytes:
    image = Image.fromarray(generate_phantom("glioma", seed=1, size=64)).resize((80, 48))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif, quality=95)


def _sixteen_bit() -> bytes:
    return encode(Image.fromarray(generate_phantom("pituitary", seed=2).astype(np.uint16) * 16))


def _tiff(pages: int) -> bytes:
    buffer = io.BytesIO()
    frames = [Image.fromarray(generate_phantom("glioma", seed=i, size=64)) for i in range(pages)]
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def _truncated_dicom() -> bytes:
    data = dataset_bytes(phantom_series("glioma", n_slices=1, size=64)[0])
    return data[: len(data) - 3000]


HOSTILE: dict[str, tuple[object, int, str | None]] = {
    # name: (bytes or factory, expected status, expected error code)
    "decompression bomb (30000x30000 header)": (
        png_header_only(30000, 30000),
        413,
        "too_many_pixels",
    ),
    "png text-chunk bomb": (png_text_bomb, 413, "metadata_too_large"),
    "truncated jpeg": (encode(grey_image(256, 3), "JPEG")[:2500], 422, "truncated_image"),
    "cmyk jpeg": (_cmyk, 202, None),
    "16-bit png": (_sixteen_bit, 202, None),
    "palette with transparency": (_palette_with_transparency, 202, None),
    "exif orientation": (_exif_rotated, 202, None),
    "multi-page tiff within the cap": (lambda: _tiff(3), 202, None),
    "multi-page tiff over the cap": (lambda: _tiff(6), 413, "too_many_pages"),
    "zip bomb": (zip_bomb, 413, "zip_bomb"),
    "nested zip": (
        lambda: zip_bytes({"inner.zip": zip_series(phantom_series("glioma", n_slices=2))}),
        422,
        "nested_archive",
    ),
    "zip-slip ../": (zip_bytes({"../../evil.dcm": b"x"}), 422, "unsafe_member_path"),
    "zip-slip absolute": (zip_bytes({"/etc/evil.dcm": b"x"}), 422, "unsafe_member_path"),
    "zip-slip backslash": (zip_bytes({"..\\..\\evil.dcm": b"x"}), 422, "unsafe_member_path"),
    "zip-slip drive letter": (zip_bytes({"C:/evil.dcm": b"x"}), 422, "unsafe_member_path"),
    "zip symlink member": (zip_with_symlink(), 422, "symlink_member"),
    "dicom with a huge declared length": (_huge_length_dicom, 422, "dicom_no_pixel_data"),
    "truncated dicom": (_truncated_dicom, 422, "dicom_no_pixel_data"),
    "empty": (b"", 422, "empty_file"),
    # A header number that is not a number (non-numeric DS/IS, a US of the wrong length) was
    # an unhandled ValueError/TypeError in the decode sandbox: HTTP 500.
    **{
        f"dicom with {case}": (malformed_dicom(keyword, raw), 422, "invalid_dicom")
        for case, (keyword, raw) in MALFORMED_VALUES.items()
    },
}


def _payload(value: object) -> bytes:
    return value() if callable(value) else value  # type: ignore[operator,return-value]


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_upload(api: Api, name: str) -> None:
    value, status, code = HOSTILE[name]
    before = api.state()
    response = api.client.post(
        "/v1/jobs/predict",
        headers=HEADERS,
        files={"file": ("upload.bin", _payload(value), "image/png")},
    )
    assert response.status_code == status, response.text
    if code is None:
        job_id = response.json()["job_id"]
        objects, jobs, messages = api.state()
        assert jobs == before[1] + 1 and messages == before[2] + 1
        assert [
            Path(p).relative_to(api.settings.data_dir / "objects" / "uploads").as_posix()
            for p in set(objects) - set(before[0])
        ] == [f"{job_id}/input.png"]
    else:
        assert response.json()["error"]["code"] == code
        assert api.state() == before


def test_exif_orientation_is_applied_to_what_is_stored(api: Api) -> None:
    job_id = api.client.post(
        "/v1/jobs/predict", headers=HEADERS, files={"file": ("r.jpg", _exif_rotated())}
    ).json()["job_id"]
    stored = api.settings.data_dir / "objects" / "uploads" / job_id / "input.png"
    image = Image.open(stored)
    assert image.size == (48, 80)  # portrait after EXIF orientation 6
    assert not image.info.get("exif") and "Comment" not in image.info


def test_lying_content_types_are_judged_by_content(api: Api) -> None:
    png_as_dicom = api.client.post(
        "/v1/jobs/predict",
        headers=HEADERS,
        files={"file": ("scan.dcm", phantom_png("glioma", seed=3), "application/dicom")},
    )
    assert png_as_dicom.status_code == 202
    text_as_png = api.client.post(
        "/v1/jobs/predict",
        headers=HEADERS,
        files={"file": ("scan.png", b"<html><script>alert(1)</script></html>", "image/png")},
    )
    assert text_as_png.status_code == 415


@pytest.mark.parametrize(
    "filename",
    [
        "../../../../etc/passwd",
        "<img src=x onerror=alert(1)>.png",
        "a" * 2000 + ".png",
        "Doe^Jane_MRN123.png",
        "scan\x00.png",
        "привет 医学.png",
    ],
)
def test_hostile_filenames_are_never_used(api: Api, filename: str) -> None:
    response = api.client.post(
        "/v1/jobs/predict",
        headers=HEADERS,
        files={"file": (filename, phantom_png("glioma", seed=4), "image/png")},
    )
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    stored = api.settings.data_dir / "objects" / "uploads" / job_id
    assert [p.name for p in stored.iterdir()] == ["input.png"]
    job = api.client.get(f"/v1/jobs/{job_id}", headers=HEADERS).json()
    assert "Doe" not in json.dumps(job) and "passwd" not in json.dumps(job)


def test_thousands_of_multipart_parts_are_refused(api: Api) -> None:
    boundary = "b0undary"
    parts = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nx\r\n'
        for i in range(5000)
    )
    body = (parts + f"--{boundary}--\r\n").encode()
    before = api.state()
    response = api.client.post(
        "/v1/jobs/predict",
        headers={**HEADERS, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        content=body,
    )
    assert response.status_code == 400, response.text
    assert api.state() == before


def test_many_files_in_one_request_are_refused(api: Api) -> None:
    files = [("file", (f"{i}.png", b"x", "image/png")) for i in range(1500)]
    response = api.client.post("/v1/jobs/predict", headers=HEADERS, files=files)
    assert response.status_code == 400


def test_memory_stays_bounded_under_bombs(api: Api) -> None:
    """The API's own peak RSS barely moves while bombs are decoded (in capped children)."""
    bombs = [zip_bomb(), png_text_bomb(), png_header_only(40000, 40000)]
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(3):
        for bomb in bombs:
            response = api.client.post(
                "/v1/jobs/predict", headers=HEADERS, files={"file": ("b", bomb, "application/zip")}
            )
            assert response.status_code == 413
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < 200, f"API peak RSS grew by {grown_mb:.0f} MB"


def test_zip_members_are_stored_under_generated_names(api: Api) -> None:
    data = zip_series(phantom_series("glioma", n_slices=3, size=64))
    renamed = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(renamed, "w") as target:
        for info in source.infolist():
            target.writestr(f"Doe_Jane/{info.filename.split('/')[-1]}", source.read(info))
    job_id = api.client.post(
        "/v1/jobs/predict", headers=HEADERS, files={"file": ("series.zip", renamed.getvalue())}
    ).json()["job_id"]
    stored = api.settings.data_dir / "objects" / "uploads" / job_id / "input.zip"
    with zipfile.ZipFile(stored) as archive:
        assert archive.namelist() == [
            "series/IMG00001.dcm",
            "series/IMG00002.dcm",
            "series/IMG00003.dcm",
        ]
