"""Zip safety: every limit enforced, dangerous names and links refused, temp files removed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from brainmri.errors import InputError, InputTooLargeError, UnsafeArchiveError
from brainmri.imaging.decode import InputFormat
from brainmri.imaging.inputs import decode_input
from brainmri.imaging.limits import InputLimits
from brainmri.imaging.safezip import extract_zip
from brainmri.phantom_dicom import dataset_bytes, phantom_series, zip_series
from tests.helpers import lying_zip, zip_bomb, zip_bytes, zip_with_symlink


def _leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("brainmri-zip-*")}


@pytest.fixture
def no_temp_leftovers():
    before = _leftovers()
    yield
    assert _leftovers() == before, "extraction left a temporary folder behind"


def test_zip_bomb_is_refused(no_temp_leftovers: None) -> None:
    with pytest.raises(UnsafeArchiveError) as info:
        decode_input(zip_bomb())
    assert info.value.code == "zip_bomb"


def test_total_bytes_limit(no_temp_leftovers: None) -> None:
    data = zip_series(phantom_series("glioma", n_slices=4))
    with pytest.raises(InputTooLargeError) as info:
        decode_input(data, limits=InputLimits(zip_max_total_bytes=20_000))
    assert info.value.code == "zip_too_large"


def test_lying_header_is_caught_while_streaming(tmp_path: Path) -> None:
    with pytest.raises((UnsafeArchiveError, InputError)) as info:
        extract_zip(lying_zip(), tmp_path, InputLimits(zip_max_ratio=10_000))
    assert info.value.code in {"zip_bomb", "invalid_archive"}


def test_member_count_limit(no_temp_leftovers: None) -> None:
    members = {f"f{i}.txt": b"x" for i in range(11)}
    with pytest.raises(InputTooLargeError) as info:
        decode_input(zip_bytes(members), limits=InputLimits(zip_max_members=10))
    assert info.value.code == "too_many_members"


@pytest.mark.parametrize(
    "name",
    [
        "../evil.dcm",
        "series/../../evil.dcm",
        "/etc/cron.d/evil",
        "..\\evil.dcm",
        "C:/windows/evil.dcm",
        "c:evil.dcm",
    ],
)
def test_traversal_names_are_refused(name: str, no_temp_leftovers: None) -> None:
    with pytest.raises(UnsafeArchiveError) as info:
        decode_input(zip_bytes({name: b"x"}))
    assert info.value.code == "unsafe_member_path"


def test_symlink_member_is_refused(no_temp_leftovers: None) -> None:
    with pytest.raises(UnsafeArchiveError) as info:
        decode_input(zip_with_symlink())
    assert info.value.code == "symlink_member"


def test_nested_zip_is_refused(no_temp_leftovers: None) -> None:
    inner = zip_series(phantom_series("glioma", n_slices=2))
    with pytest.raises(UnsafeArchiveError) as info:
        decode_input(zip_bytes({"inner.zip": inner}))
    assert info.value.code == "nested_archive"


def test_members_are_written_under_generated_names(tmp_path: Path) -> None:
    data = zip_bytes({"a/b/Patient Name^Doe.dcm": b"one", "c.dcm": b"two"})
    members = extract_zip(data, tmp_path, InputLimits())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["member-00000", "member-00001"]
    assert [m.size for m in members] == [3, 3]


def test_successful_read_removes_temp_folder(no_temp_leftovers: None) -> None:
    decoded = decode_input(zip_series(phantom_series("glioma", n_slices=3)))
    assert decoded.details["n_slices"] == 3


def test_not_a_zip_after_all() -> None:
    with pytest.raises(InputError) as info:
        decode_input(b"PK\x03\x04" + b"\x00" * 200)
    assert info.value.code == "invalid_archive"


def test_junk_members_are_ignored_beside_dicom() -> None:
    series = phantom_series("glioma", n_slices=3)
    data = zip_series(series, extra={"__MACOSX/._IMG": b"junk", "DICOMDIR.txt": b"index"})
    assert decode_input(data).details["n_slices"] == 3
    assert dataset_bytes(series[0])[128:132] == b"DICM"


def test_members_of_another_format_never_reach_the_disk(tmp_path: Path) -> None:
    """A DICOM reader asks for DICOM only: filler members are read one chunk, not written."""
    dicom = dataset_bytes(phantom_series("glioma", n_slices=1, size=64)[0])
    data = zip_bytes({"notes.txt": os.urandom(3 * 1024 * 1024), "IMG1.dcm": dicom})
    members = extract_zip(data, tmp_path, InputLimits(), only=InputFormat.DICOM)
    assert [(m.index, m.size) for m in members] == [(1, len(dicom))]
    assert [p.name for p in tmp_path.iterdir()] == ["member-00001"]
