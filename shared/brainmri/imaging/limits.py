"""Input limits passed explicitly to every decoder, so library code never reads globals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from brainmri.config import Settings


@dataclass(frozen=True, slots=True)
class InputLimits:
    """Bounds that keep hostile or accidental inputs from exhausting memory or time."""

    max_bytes: int = 64 * 1024**2
    max_pixels: int = 40_000_000
    max_tiff_pages: int = 16
    zip_max_members: int = 2000
    max_dicom_frames: int = 2000
    max_dicom_object_pixels: int = 2000 * 512 * 512
    zip_max_total_bytes: int = 1024**3
    zip_max_ratio: float = 200.0

    @classmethod
    def from_settings(cls, settings: Settings) -> InputLimits:
        return cls(
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_image_pixels,
            max_tiff_pages=settings.max_tiff_pages,
            zip_max_members=settings.zip_max_members,
            max_dicom_frames=settings.max_dicom_frames,
            max_dicom_object_pixels=settings.max_dicom_object_pixels,
            zip_max_total_bytes=settings.zip_max_total_bytes,
            zip_max_ratio=settings.zip_max_ratio,
        )
