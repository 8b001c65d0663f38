"""Extract untrusted zip archives without trusting anything they declare.

Member names are validated and then *not used*: members are written under generated names
inside a caller-owned temporary folder, so no path can ever leave it. Sizes, member count and
compression ratio are enforced while streaming, because the sizes in a zip header can lie.
"""

from __future__ import annotations

import io
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from brainmri.errors import InputError, InputTooLargeError, UnsafeArchiveError
from brainmri.imaging.decode import InputFormat, sniff_format
from brainmri.imaging.limits import InputLimits

_CHUNK = 1024 * 1024
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_IGNORED_PREFIXES = ("__MACOSX/",)


@dataclass(frozen=True, slots=True)
class ExtractedMember:
    """A member written to disk under a generated name; ``index`` is its place in the zip."""

    index: int
    path: Path
    size: int


def check_member_name(name: str) -> None:
    """Refuse names that could escape a folder or mean different things on other systems."""
    if not name or "\x00" in name:
        raise UnsafeArchiveError(
            "zip member has an empty or NUL-containing name", code="unsafe_member_path"
        )
    if "\\" in name or name.startswith("/") or _DRIVE_LETTER.match(name):
        raise UnsafeArchiveError(
            f"zip member name {name!r} is absolute or uses backslashes/drive letters",
            code="unsafe_member_path",
        )
    if ".." in PurePosixPath(name).parts:
        raise UnsafeArchiveError(
            f"zip member name {name!r} contains '..'", code="unsafe_member_path"
        )


def extract_zip(
    data: bytes, dest: Path, limits: InputLimits, *, only: InputFormat | None = None
) -> list[ExtractedMember]:
    """Extract regular-file members of ``data`` into ``dest`` (which the caller deletes).

    With ``only``, a member whose first bytes are not of that format is skipped after reading
    its first chunk, so it never reaches the disk: a zip of highly compressible filler would
    otherwise fill the scratch space with files nobody reads (up to ``zip_max_total_bytes``
    per upload, on a ``/tmp`` that is often a small volume).

    Raises:
        InputError: the bytes are not a readable zip archive.
        UnsafeArchiveError: traversal names, links, encryption, nested archives, bomb ratios.
        InputTooLargeError: too many members or too many decompressed bytes.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InputError(f"not a readable zip archive: {exc}", code="invalid_archive") from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.zip_max_members:
            raise InputTooLargeError(
                f"zip has {len(infos)} members; the limit is {limits.zip_max_members}",
                code="too_many_members",
            )
        for info in infos:
            _check_declared(info, limits)
        declared_total = sum(info.file_size for info in infos)
        if declared_total > limits.zip_max_total_bytes:
            raise InputTooLargeError(
                f"zip declares {declared_total} uncompressed bytes; "
                f"the limit is {limits.zip_max_total_bytes}",
                code="zip_too_large",
            )
        extracted: list[ExtractedMember] = []
        budget = _Budget(limits.zip_max_total_bytes)
        for index, info in enumerate(infos):
            if info.is_dir() or info.filename.startswith(_IGNORED_PREFIXES):
                continue
            target = dest / f"member-{index:05d}"
            size = _stream_member(archive, info, target, budget, limits, only)
            if size is not None:
                extracted.append(ExtractedMember(index=index, path=target, size=size))
        return extracted


def _check_declared(info: zipfile.ZipInfo, limits: InputLimits) -> None:
    check_member_name(info.filename)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(
            f"zip member {info.filename!r} is a symbolic link", code="symlink_member"
        )
    if info.flag_bits & 0x1:
        raise UnsafeArchiveError(
            f"zip member {info.filename!r} is encrypted", code="encrypted_member"
        )
    if info.compress_size and info.file_size / info.compress_size > limits.zip_max_ratio:
        raise UnsafeArchiveError(
            f"zip member {info.filename!r} declares a compression ratio of "
            f"{info.file_size / info.compress_size:.0f}; the limit is {limits.zip_max_ratio:.0f}",
            code="zip_bomb",
        )


class _Budget:
    """Total decompressed bytes still allowed across the whole archive."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.total = total

    def spend(self, amount: int) -> None:
        self.left -= amount
        if self.left < 0:
            raise InputTooLargeError(
                f"zip decompresses to more than {self.total} bytes", code="zip_too_large"
            )


def _stream_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    target: Path,
    budget: _Budget,
    limits: InputLimits,
    only: InputFormat | None,
) -> int | None:
    """Bytes written to ``target``; None when the member is not of format ``only``."""
    written = 0
    # Even an empty-looking member is allowed some slack for headers before the ratio bites.
    ratio_allowance = max(info.compress_size, 1024) * limits.zip_max_ratio
    try:
        with archive.open(info) as source:
            chunk = source.read(_CHUNK)
            kind = sniff_format(chunk[:132])
            if kind is InputFormat.ZIP:
                raise UnsafeArchiveError(
                    f"zip member {info.filename!r} is itself a zip archive; "
                    "nested archives are not accepted",
                    code="nested_archive",
                )
            if only is not None and kind is not only:
                _charge(info, chunk, 0, budget, ratio_allowance)  # decompressed all the same
                return None
            with target.open("xb") as sink:
                while chunk:
                    written = _charge(info, chunk, written, budget, ratio_allowance)
                    sink.write(chunk)
                    chunk = source.read(_CHUNK)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
        raise InputError(
            f"cannot read zip member {info.filename!r}: {exc}", code="invalid_archive"
        ) from exc
    return written


def _charge(
    info: zipfile.ZipInfo, chunk: bytes, written: int, budget: _Budget, ratio_allowance: float
) -> int:
    """Count a decompressed chunk against the archive's budget and the member's declared size
    and ratio; the member's bytes so far."""
    written += len(chunk)
    budget.spend(len(chunk))
    if written > info.file_size or written > ratio_allowance:
        raise UnsafeArchiveError(
            f"zip member {info.filename!r} decompresses beyond its declared size or the allowed "
            "compression ratio",
            code="zip_bomb",
        )
    return written
