"""Malformed DICOM files for tests: real Part-10 bytes with one header value broken the way a
misbehaving writer breaks it. pydicom refuses to write most of these values itself, so the
element is rewritten in the bytes pydicom produced; pydicom then reads the file as it would
read one from a scanner."""

from __future__ import annotations

import struct

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from brainmri.phantom_dicom import dataset_bytes, phantom_series

#: Malformed values the decoder must refuse as invalid DICOM, by attribute. Each raised a bare
#: ValueError, TypeError or pydicom BytesLengthException (HTTP 500) before.
MALFORMED_VALUES: dict[str, tuple[str, bytes]] = {
    "non-numeric ImageOrientationPatient": ("ImageOrientationPatient", b"a\\b\\c\\d\\e\\f "),
    "non-numeric NumberOfFrames": ("NumberOfFrames", b"xx"),
    "non-numeric RescaleSlope": ("RescaleSlope", b"abc "),
    "non-numeric RescaleIntercept": ("RescaleIntercept", b"abc "),
    "two-valued RescaleSlope": ("RescaleSlope", b"1\\2 "),
    "Rows of three bytes": ("Rows", b"\x40\x00\x00"),
    "Rows with two values": ("Rows", b"\x40\x00\x40\x00"),
}


def with_raw_value(ds: Dataset, keyword: str, raw: bytes) -> bytes:
    """``ds`` as Part-10 bytes with the value of the first ``keyword`` (at any depth) replaced
    by ``raw``.

    Only for elements with a 2-byte explicit-VR length and one dictionary VR (DS, IS, US, ...),
    which is how the phantom files (explicit VR little endian) store every header number.
    pydicom writes sequences with explicit lengths: a nested value must keep its length.
    """
    data = dataset_bytes(ds)
    tag = Tag(keyword)
    head = struct.pack("<HH", tag.group, tag.element) + dictionary_VR(tag).encode()
    at = data.index(head, 132)  # after the preamble and "DICM"
    length = struct.unpack_from("<H", data, at + 6)[0]
    return data[: at + 6] + struct.pack("<H", len(raw)) + raw + data[at + 8 + length :]


def malformed_dicom(keyword: str, raw: bytes, *, seed: int = 0) -> bytes:
    """A one-slice 64x64 phantom MR file whose ``keyword`` holds the bytes ``raw``."""
    ds = phantom_series("glioma", n_slices=1, size=64, seed=seed)[0]
    if keyword not in ds:
        setattr(ds, keyword, 1)  # NumberOfFrames: a single-frame object may state it
    return with_raw_value(ds, keyword, raw)


def lut_item(descriptor: list[int] | None, data: list[int] | None) -> Dataset:
    """A Modality/VOI LUT sequence item. Both members are ambiguous "US or xx" in the data
    dictionary; stating US lets pydicom write them as plain lists."""
    item = Dataset()
    if descriptor is not None:
        item.add_new(Tag("LUTDescriptor"), "US", descriptor)
    if data is not None:
        item.add_new(Tag("LUTData"), "US", data)
    return item
