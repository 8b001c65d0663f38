"""Raster decoding: content sniffing, mode normalisation, limits and distinct errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from brainmri.errors import (
    EmptyInputError,
    InputTooLargeError,
    UndecodableImageError,
    UnsupportedFormatError,
)
from brainmri.imaging.decode import InputFormat, decode_image, sniff_format
from brainmri.imaging.inputs import decode_input
from brainmri.imaging.limits import InputLimits
from brainmri.phantom import generate_phantom
from tests.helpers import encode, grey_image, png_header_only, png_text_bomb, pydicom_file


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("PNG", InputFormat.PNG),
        ("JPEG", InputFormat.JPEG),
        ("TIFF", InputFormat.TIFF),
        ("BMP", InputFormat.BMP),
    ],
)
def test_format_is_detected_from_content(fmt: str, expected: InputFormat) -> None:
    data = encode(grey_image(), fmt)
    assert sniff_format(data[:132]) is expected
    decoded = decode_image(data)
    assert decoded.source_format is expected
    assert decoded.pixels.shape == (64, 64)
    assert decoded.pixels.dtype == np.float32


def test_png_named_jpg_decodes_as_png(tmp_path) -> None:
    path = tmp_path / "Tr-no_1005.jpg"
    path.write_bytes(encode(grey_image(), "PNG"))
    assert decode_image(path.read_bytes()).source_format is InputFormat.PNG


def test_dual_personality_dicom_with_tiff_preamble_is_dicom() -> None:
    data = pydicom_file("MR_small.dcm")
    assert data[:4] == b"II*\x00"  # a TIFF header lives in its preamble
    assert sniff_format(data[:132]) is InputFormat.DICOM


def test_grey_8bit_is_value_over_255() -> None:
    pixels = np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)
    decoded = decode_image(encode(Image.fromarray(pixels, "L")))
    np.testing.assert_allclose(decoded.pixels, pixels / 255.0, atol=1e-6)


def test_rgb_that_is_grey_equals_the_grey_image() -> None:
    grey = grey_image(seed=3)
    rgb = grey.convert("RGB")
    np.testing.assert_allclose(
        decode_image(encode(rgb)).pixels, decode_image(encode(grey)).pixels, atol=1e-5
    )


def test_rgba_is_composited_on_black() -> None:
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[:, :16, 3] = 255  # left half opaque, right half transparent
    pixels = decode_image(encode(Image.fromarray(rgba, "RGBA"))).pixels
    assert pixels[:, :16].mean() == pytest.approx(200 / 255, abs=1e-3)
    assert pixels[:, 16:].max() == 0.0


def test_palette_with_transparency_uses_alpha() -> None:
    image = Image.new("P", (32, 32), 0)
    image.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    image.paste(1, (0, 0, 16, 32))
    image.info["transparency"] = 1  # the white half is transparent -> black
    data = encode(image, transparency=1)
    pixels = decode_image(data).pixels
    assert pixels.max() == 0.0


def test_palette_without_transparency_keeps_its_colours() -> None:
    image = Image.new("P", (32, 32), 1)
    image.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    assert decode_image(encode(image)).pixels.mean() == pytest.approx(1.0, abs=1e-4)


def test_16bit_is_scaled_from_its_own_range_not_clamped() -> None:
    values = np.linspace(100, 4095, 64 * 64).reshape(64, 64).astype(np.uint16)
    data = encode(Image.fromarray(values))  # a 16-bit PNG (mode I;16)
    pixels = decode_image(data).pixels
    assert pixels.min() == pytest.approx(0.0)
    assert pixels.max() == pytest.approx(1.0)
    assert 0.45 < pixels.mean() < 0.55  # a linear ramp: neither black nor saturated white


def _raw_phantom(seed: int = 3) -> np.ndarray:
    """A phantom slice as raw 12-bit values, as a research pipeline would export it."""
    return np.round(generate_phantom("glioma", seed=seed, size=96) / 255.0 * 4095).astype(np.uint16)


def _with_specks(values: np.ndarray, count: int, level: int, seed: int = 0) -> np.ndarray:
    specked = values.copy()
    head = np.flatnonzero(values.ravel() > 400)
    chosen = np.random.default_rng(seed).choice(head, size=count, replace=False)
    specked.ravel()[chosen] = level
    return specked


def test_16bit_without_specks_is_scaled_by_its_min_max() -> None:
    values = _raw_phantom()
    pixels = decode_image(encode(Image.fromarray(values))).pixels
    expected = (values - values.min()) / (values.max() - values.min())
    np.testing.assert_allclose(pixels, expected, atol=1e-6)


@pytest.mark.parametrize(("count", "level"), [(1, 16380), (9, 16380), (90, 8190), (9, 65535)])
def test_lone_bright_specks_do_not_darken_a_16bit_slice(count: int, level: int) -> None:
    """A few pixels far above any tissue (spikes, flow artefacts) are clipped to white; the
    rest of the slice keeps the brightness it has without them. Min..max would divide it by
    up to 16 here."""
    clean = _raw_phantom()
    specked = _with_specks(clean, count, level)
    expected = decode_image(encode(Image.fromarray(clean))).pixels
    pixels = decode_image(encode(Image.fromarray(specked))).pixels
    specks = specked != clean
    assert specks.sum() == count
    assert (pixels[specks] == 1.0).all()
    # Within 6% of full scale: with specks the range is the filtered one, a little short of
    # the clean slice's own min..max (on real slices 1.04x at the median).
    np.testing.assert_allclose(pixels[~specks], expected[~specks], atol=0.06)


def test_a_small_bright_object_is_not_taken_for_a_speck() -> None:
    """A 2x2 object on a constant background vanishes under the median filter; it is the
    slice's content, so min..max applies and the object stays white."""
    values = np.full((64, 64), 1000, dtype=np.uint16)
    values[30:32, 30:32] = 3000
    pixels = decode_image(encode(Image.fromarray(values))).pixels
    assert pixels[30:32, 30:32].min() == 1.0
    assert pixels.max() == 1.0 and pixels.min() == 0.0


def test_cmyk_jpeg_decodes() -> None:
    cmyk = Image.new("CMYK", (32, 32), (0, 0, 0, 128))
    pixels = decode_image(encode(cmyk, "JPEG")).pixels
    assert pixels.shape == (32, 32)
    assert 0.2 < pixels.mean() < 0.8


def test_exif_orientation_is_applied() -> None:
    image = Image.new("L", (40, 20), 0)
    image.paste(255, (0, 0, 10, 20))  # bright stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    pixels = decode_image(encode(image, "JPEG", exif=exif, quality=95)).pixels
    assert pixels.shape == (40, 20)  # portrait after orientation
    assert pixels[:10].mean() > 0.8  # the stripe is now at the top


def test_multipage_tiff_uses_first_page_and_caps_pages() -> None:
    pages = [Image.new("L", (32, 32), value) for value in (10, 200, 200)]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:])
    data = buffer.getvalue()
    assert decode_image(data).pixels.mean() == pytest.approx(10 / 255, abs=1e-4)
    with pytest.raises(InputTooLargeError) as info:
        decode_image(data, InputLimits(max_tiff_pages=2))
    assert info.value.code == "too_many_pages"


def test_empty_file() -> None:
    with pytest.raises(EmptyInputError) as info:
        decode_input(b"")
    assert info.value.code == "empty_file"


def test_text_file_is_unsupported() -> None:
    with pytest.raises(UnsupportedFormatError) as info:
        decode_input(b"patient notes: nothing to see here\n" * 10)
    assert info.value.code == "unsupported_format"


def test_truncated_jpeg() -> None:
    data = encode(grey_image(256, seed=1), "JPEG", quality=90)
    with pytest.raises(UndecodableImageError) as info:
        decode_input(data[: len(data) // 2])
    assert info.value.code == "truncated_image"


def test_huge_png_is_refused_before_decoding() -> None:
    data = png_header_only(30000, 30000)
    assert len(data) < 200
    with pytest.raises(InputTooLargeError) as info:
        decode_input(data)
    assert info.value.code == "too_many_pixels"


def test_pixel_limit_is_a_setting() -> None:
    data = encode(grey_image(64))
    decode_image(data, InputLimits(max_pixels=64 * 64))
    with pytest.raises(InputTooLargeError):
        decode_image(data, InputLimits(max_pixels=64 * 64 - 1))


def test_png_text_chunk_bomb_is_refused() -> None:
    with pytest.raises(InputTooLargeError) as info:
        decode_image(png_text_bomb())
    assert info.value.code == "metadata_too_large"


def test_byte_limit() -> None:
    data = encode(grey_image(64))
    with pytest.raises(InputTooLargeError) as info:
        decode_input(data, limits=InputLimits(max_bytes=len(data) - 1))
    assert info.value.code == "file_too_large"


def test_tiny_image_is_refused() -> None:
    with pytest.raises(UndecodableImageError) as info:
        decode_image(encode(Image.new("L", (8, 8))))
    assert info.value.code == "image_too_small"


def test_corrupt_png_body() -> None:
    data = bytearray(encode(grey_image(64)))
    data[60:120] = b"\xff" * 60
    with pytest.raises(UndecodableImageError):
        decode_image(bytes(data))


# --- content that only looks like a BMP or TIFF by its first bytes ------------------------------
@pytest.mark.parametrize(
    "text",
    [
        b"BMW service report: brakes and tyres checked, nothing to note.\n" * 4,
        b"BM" + b"x" * 200,
        b"BM\x00\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00" + b"\x29\x00\x00\x00" + b"\x00" * 64,
    ],
    ids=["bmw-text", "bm-filler", "unknown-dib-size-41"],
)
def test_text_starting_with_bm_is_unsupported_not_a_truncated_bmp(text: bytes) -> None:
    assert sniff_format(text[:132]) is InputFormat.UNKNOWN
    with pytest.raises(UnsupportedFormatError) as info:
        decode_input(text)
    assert info.value.code == "unsupported_format"
    with pytest.raises(UnsupportedFormatError):
        decode_image(text)


def test_bmp_whose_file_size_field_is_smaller_than_its_headers_is_unsupported() -> None:
    data = bytearray(encode(grey_image(), "BMP"))
    data[2:6] = (20).to_bytes(4, "little")  # 14 + 40 bytes of headers cannot fit in 20
    assert sniff_format(bytes(data[:132])) is InputFormat.UNKNOWN
    with pytest.raises(UnsupportedFormatError):
        decode_input(bytes(data))


@pytest.mark.parametrize("mode", ["L", "RGB", "P", "1"])
def test_real_bmps_still_decode(mode: str) -> None:
    data = encode(grey_image(seed=2).convert(mode), "BMP")
    assert sniff_format(data[:132]) is InputFormat.BMP
    assert decode_image(data).pixels.shape == (64, 64)


def test_bmp_with_an_unset_file_size_field_still_decodes() -> None:
    data = bytearray(encode(grey_image(seed=4), "BMP"))
    data[2:6] = b"\x00\x00\x00\x00"  # a few writers leave bfSize at 0
    assert decode_image(bytes(data)).pixels.shape == (64, 64)


def test_os2_bmp_with_a_12_byte_header_decodes() -> None:
    width = height = 16
    row = bytes(range(0, 48))  # 16 BGR pixels, 48 bytes: already 4-byte aligned
    pixels = row * height
    offset = 14 + 12
    header = b"BM" + (offset + len(pixels)).to_bytes(4, "little") + b"\x00" * 4
    header += offset.to_bytes(4, "little")
    dib = (12).to_bytes(4, "little") + width.to_bytes(2, "little") + height.to_bytes(2, "little")
    dib += (1).to_bytes(2, "little") + (24).to_bytes(2, "little")
    data = header + dib + pixels
    assert sniff_format(data[:132]) is InputFormat.BMP
    assert decode_image(data).pixels.shape == (16, 16)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's, about the text "IFD"
def test_undecodable_tiff_message_has_no_object_repr() -> None:
    data = b"II*\x00" + b"this looks like a TIFF header but is just text. " * 4
    with pytest.raises(UndecodableImageError) as info:
        decode_image(data)
    assert "object at" not in str(info.value) and "0x" not in str(info.value)
    assert str(info.value).startswith("cannot decode tiff image: ")
