"""Replies from decode children are data, not code.

A decoder exploit runs in the child; if the parent unpickled the child's replies, the exploit
could answer with a pickle that runs code in the API or worker process, outside every
confinement. These tests show what the reply format carries, what it refuses on both ends,
and - with a real child that forges a pickled reply - that the parent never runs it.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from dataclasses import dataclass
from enum import Enum
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pytest
from PIL import UnidentifiedImageError

from brainmri.errors import InputError, UndecodableImageError
from brainmri.imaging import wire
from brainmri.imaging.confine import Confinement
from brainmri.imaging.decode import InputFormat
from brainmri.imaging.ingest import SanitizedUpload
from brainmri.imaging.inputs import DecodedInput
from brainmri.imaging.sandbox import DecodeSandbox


def round_trip(value: object) -> object:
    return wire.loads(wire.dumps(value))


def test_decoder_results_come_back_whole() -> None:
    slices = [np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4), np.ones((3, 4), np.float32)]
    decoded = DecodedInput(
        slices,
        "dicom_zip",
        InputFormat.ZIP,
        {"n_slices": 2, "selected_indices": (3, 4), "pixel_spacing_mm": None, "modality": "MR"},
    )
    back = round_trip((True, decoded))
    assert isinstance(back, tuple) and back[0] is True
    got = back[1]
    assert isinstance(got, DecodedInput)
    assert got.source_format is InputFormat.ZIP and got.kind == "dicom_zip"
    assert got.details == decoded.details and isinstance(got.details["selected_indices"], tuple)
    for a, b in zip(got.slices, slices, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
        assert a.flags.writeable  # callers may modify pixels in place
    upload = SanitizedUpload(b"\x89PNG...", ".png", "image", "png", {"width": 4})
    assert round_trip(upload) == upload
    report = Confinement(7, True, True, True)
    assert round_trip(("ready", "/tmp/scratch", report)) == ("ready", "/tmp/scratch", report)
    for array in (np.arange(6, dtype=np.uint16).reshape(2, 3), np.array([True, False])):
        assert np.array_equal(round_trip(array), array)
    assert round_trip([1, 2.5, "x", None, b"\x00\x01", {"k": [1, (2,)]}]) == [
        1,
        2.5,
        "x",
        None,
        b"\x00\x01",
        {"k": [1, (2,)]},
    ]


def test_errors_keep_class_code_and_the_childs_traceback() -> None:
    def fail() -> None:
        raise UndecodableImageError("the JPEG stream ends early", code="truncated_image")

    try:
        fail()
    except InputError as exc:
        error = round_trip(exc)
    assert type(error) is UndecodableImageError
    assert error.code == "truncated_image" and str(error) == "the JPEG stream ends early"
    assert isinstance(error.__cause__, wire.RemoteTraceback)
    assert "in fail" in str(error.__cause__)
    denied = round_trip(PermissionError(13, "Permission denied"))
    assert type(denied) is PermissionError and denied.errno == 13

    class LibraryError(Exception):
        pass

    renamed = round_trip(LibraryError("codec state broken"))
    assert type(renamed) is Exception and "LibraryError: codec state broken" in str(renamed)
    # A library's OSError stays an OSError, so `except OSError` still catches it.
    unidentified = round_trip(UnidentifiedImageError("cannot identify image file"))
    assert type(unidentified) is OSError
    assert "UnidentifiedImageError: cannot identify image file" in str(unidentified)


class Colour(Enum):
    RED = 1


@dataclass
class Stranger:
    x: int


@pytest.mark.parametrize(
    "value",
    [
        np.array([object()], dtype=object),
        {1, 2},
        {1: "int key"},
        Colour.RED,
        Stranger(1),
        object(),
    ],
    ids=["object-array", "set", "int-key", "other-enum", "other-dataclass", "object"],
)
def test_a_child_cannot_send_what_the_format_does_not_carry(value: object) -> None:
    with pytest.raises(wire.WireError):
        wire.dumps(value)


class Payload:
    """A forged reply: unpickling it calls ``os.mkdir(marker)`` - any code would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (self.marker,))


def test_a_pickle_is_refused_unread(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(str(marker))))
    assert marker.is_dir()
    marker.rmdir()
    with pytest.raises(wire.WireError):
        wire.loads(pickle.dumps((True, Payload(str(marker)))))
    assert not marker.exists()


def framed(header: bytes, *buffers: bytes) -> bytes:
    return len(header).to_bytes(4, "big") + header + b"".join(buffers)


def forged(header: dict, *buffers: bytes) -> bytes:
    return framed(json.dumps({**header, "buffers": [len(b) for b in buffers]}).encode(), *buffers)


@pytest.mark.parametrize(
    "frame",
    [
        forged({"value": {"$": "pickle", "v": "..."}}),
        forged({"value": {"$": "dataclass", "name": "Path", "v": {}}}),
        forged({"value": {"$": "error", "name": "os.system", "args": ["id"]}}),
        forged({"value": {"$": "array", "i": 0, "dtype": "|O", "shape": [1]}}, b"\x00" * 8),
        forged({"value": {"$": "dataclass", "name": "Confinement", "v": {"abi": 1, "evil": 1}}}),
        forged({"value": {"$": "bytes", "i": 0}}, b"abc") + b"trailing",
        b"\x00\x00",
        framed(b'{"value":' + b"[" * 100_000 + b"]" * 100_000 + b',"buffers":[]}'),
    ],
    ids=[
        "unknown-tag",
        "unregistered-class",
        "non-exception",
        "object-dtype",
        "extra-field",
        "bad-length",
        "short",
        "deep",
    ],
)
def test_malformed_or_hostile_frames_are_refused(frame: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.loads(frame)


def hijack(marker: str) -> None:
    """What a decoder exploit could do: answer for its child with a pickle that runs code."""
    answer = Connection(os.dup(int(sys.argv[1])))
    answer.send_bytes(pickle.dumps((True, Payload(marker))))
    answer.close()
    time.sleep(30)


def test_a_child_that_forges_a_pickled_reply_runs_nothing_here(tmp_path: Path) -> None:
    marker = tmp_path / "ran-in-the-parent"
    # Unconfined: the child must import this module (tests/shared/test_confine.py confines).
    sandbox = DecodeSandbox(processes=1, timeout=20.0, confine=False)
    try:
        first = sandbox.run(os.getpid)
        started = time.monotonic()
        with pytest.raises(UndecodableImageError) as refused:
            sandbox.run(hijack, str(marker))
        assert time.monotonic() - started < 15  # refused on arrival, not at the timeout
        assert refused.value.code == "decode_crashed"
        assert not marker.exists()
        assert sandbox.run(os.getpid) != first  # the lying child was replaced
    finally:
        sandbox.close()
