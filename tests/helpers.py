"""Test-side generators for hostile and unusual inputs, and checks shared by the service
tests (never imported by the project)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import jsonschema
import numpy as np
import pydicom
from PIL import Image

from brainmri.jobs.results import RESULT_MODELS

PYDICOM_TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def pydicom_file(name: str) -> bytes:
    """A file bundled inside pydicom (never downloaded)."""
    return (PYDICOM_TEST_FILES / name).read_bytes()


def encode(image: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def grey_image(size: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size, size), dtype=np.uint8), mode="L")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def png_header_only(width: int, height: int) -> bytes:
    """A syntactically valid PNG claiming ``width`` x ``height`` with almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def png_text_bomb(uncompressed: int = 64 * 1024 * 1024) -> bytes:
    """A small PNG with a zTXt chunk that inflates to ``uncompressed`` bytes."""
    base = encode(grey_image(32))
    ztxt = b"Comment\x00\x00" + zlib.compress(b"A" * uncompressed, 9)
    return base[:33] + _chunk(b"zTXt", ztxt) + base[33:]


def zip_bytes(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def zip_with_symlink(name: str = "link.dcm", target: str = "/etc/passwd") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo(name)
        info.external_attr = 0o120777 << 16
        archive.writestr(info, target)
    return buffer.getvalue()


def zip_bomb(size: int = 300 * 1024 * 1024) -> bytes:
    """One member of ``size`` zero bytes (compresses ~1000:1)."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("bomb.dcm", "w", force_zip64=True) as member,
    ):
        block = b"\x00" * (1024 * 1024)
        for _ in range(size // len(block)):
            member.write(block)
    return buffer.getvalue()


def lying_zip(declared: int = 10, actual: int = 5 * 1024 * 1024) -> bytes:
    """A member whose header declares ``declared`` bytes but inflates to ``actual``."""
    data = zip_bytes({"liar.dcm": b"\x00" * actual})
    # Patch the uncompressed size in the local header (offset 22) and central directory.
    patched = bytearray(data)
    local_size_offset = 22
    patched[local_size_offset : local_size_offset + 4] = struct.pack("<I", declared)
    central = data.rfind(b"PK\x01\x02")
    patched[central + 24 : central + 28] = struct.pack("<I", declared)
    return bytes(patched)


def assert_documented_result(openapi: dict, kind: str, result: dict) -> None:
    """``result`` matches the OpenAPI document's schema for a ``kind`` job exactly: every
    required field there, none it does not describe (the result models forbid extras)."""
    name = RESULT_MODELS[kind].__name__
    schema = {"$ref": f"#/components/schemas/{name}", "components": openapi["components"]}
    jsonschema.validate(result, schema)
