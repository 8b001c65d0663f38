"""DICOM input: series grouping and ordering, pixel pipeline, slice choice, PHI, errors."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from brainmri.errors import (
    DicomPixelDataError,
    InconsistentSeriesError,
    InputTooLargeError,
    InvalidDicomError,
    NoDicomFoundError,
    SeriesNotFoundError,
)
from brainmri.imaging.dicom import SliceSelection
from brainmri.imaging.inputs import decode_input
from brainmri.imaging.limits import InputLimits
from brainmri.phantom import generate_phantom
from brainmri.phantom_dicom import (
    FakePatient,
    dataset_bytes,
    multiframe_dataset,
    phantom_series,
    zip_series,
)
from tests.helpers import pydicom_file, zip_bytes
from tests.shared.dicom_faults import (
    MALFORMED_VALUES,
    lut_item,
    malformed_dicom,
    with_raw_value,
)


def _expected_centre(class_name: str, seed: int, size: int = 64) -> np.ndarray:
    grey = generate_phantom(class_name, seed=seed, size=size).astype(np.float64) / 255.0
    return np.round(grey * 4000.0)


def test_zipped_series_is_sorted_and_centre_slice_chosen() -> None:
    series = phantom_series("glioma", n_slices=9, seed=5)
    assert [int(ds.InstanceNumber) for ds in series] != list(range(1, 10))  # scrambled
    decoded = decode_input(zip_series(series))
    assert decoded.kind == "dicom_zip"
    assert decoded.details["n_slices"] == 9
    assert decoded.details["selected_indices"] == (4,)
    expected = _expected_centre("glioma", 5)
    rescaled = expected - expected.min()
    np.testing.assert_allclose(decoded.slices[0], rescaled / rescaled.max(), atol=1e-5)


def test_ordering_uses_position_not_instance_number() -> None:
    series = phantom_series("meningioma", n_slices=7, seed=2)
    for ds in series:  # instance numbers now run against the positions
        ds.InstanceNumber = 100 - int(ds.InstanceNumber)
    decoded = decode_input(zip_series(series))
    expected = _expected_centre("meningioma", 2)
    assert np.corrcoef(decoded.slices[0].ravel(), expected.ravel())[0, 1] > 0.999


def test_middle_k_selection() -> None:
    decoded = decode_input(
        zip_series(phantom_series("pituitary", n_slices=9, seed=1)),
        dicom_selection=SliceSelection("middle_k", k=3),
    )
    assert decoded.details["selected_indices"] == (3, 4, 5)
    assert len(decoded.slices) == 3
    assert SliceSelection("middle_k", k=4).indices(9) == [2, 3, 4, 5]
    assert SliceSelection("middle_k", k=20).indices(5) == [0, 1, 2, 3, 4]
    assert SliceSelection("center").indices(10) == [5]


def test_rescale_slope_and_intercept_are_applied() -> None:
    plain = decode_input(
        zip_series(phantom_series("glioma", n_slices=3, seed=4, window=(2000, 4000)))
    )
    scaled = decode_input(
        zip_series(
            phantom_series(
                "glioma", n_slices=3, seed=4, slope=2.0, intercept=-100.0, window=(2000, 4000)
            )
        )
    )
    # Same modality values stored differently: identical after the modality LUT + window.
    np.testing.assert_allclose(plain.slices[0], scaled.slices[0], atol=2e-3)


def test_lone_bright_specks_do_not_darken_an_unwindowed_series() -> None:
    """Without a VOI window the series is scaled from its own values; a few pixels of the
    centre slice at four times any tissue are clipped, not allowed to darken the rest."""
    clean = phantom_series("glioma", n_slices=5, seed=6, slope=4.0)  # tissue stored <= 1000
    specked = phantom_series("glioma", n_slices=5, seed=6, slope=4.0)
    centre = next(ds for ds in specked if int(ds.InstanceNumber) == 3)
    stored = centre.pixel_array.copy()
    head = np.flatnonzero(stored.ravel() > 100)
    chosen = np.random.default_rng(1).choice(head, size=6, replace=False)
    stored.ravel()[chosen] = 4095  # modality value 16380
    centre.PixelData = stored.astype("<u2").tobytes()
    expected = decode_input(zip_series(clean)).slices[0]
    decoded = decode_input(zip_series(specked))
    assert decoded.details["windowed"] is False
    pixels = decoded.slices[0]
    specks = np.zeros(pixels.shape, dtype=bool)
    specks.ravel()[chosen] = True
    assert (pixels[specks] == 1.0).all()
    # Within 6% of full scale: with specks the range is the filtered one, a little short of
    # the clean slice's own min..max (on real slices 1.04x at the median).
    np.testing.assert_allclose(pixels[~specks], expected[~specks], atol=0.06)


def test_voi_window_maps_window_to_unit_range() -> None:
    decoded = decode_input(
        zip_series(phantom_series("glioma", n_slices=3, seed=4, window=(1000, 400)))
    )
    values = decoded.slices[0]
    assert decoded.details["windowed"] is True
    assert values.min() == 0.0
    assert values.max() == 1.0
    assert (values == 1.0).mean() > 0.3  # everything above 1200 saturates


def test_monochrome1_is_inverted() -> None:
    mono2 = decode_input(zip_series(phantom_series("glioma", n_slices=3, seed=9)))
    mono1 = decode_input(
        zip_series(phantom_series("glioma", n_slices=3, seed=9, photometric="MONOCHROME1"))
    )
    assert mono1.details["photometric"] == "MONOCHROME1"
    np.testing.assert_allclose(mono1.slices[0], mono2.slices[0], atol=2e-3)


def test_multiframe_frames_are_ordered_by_per_frame_position() -> None:
    decoded = decode_input(dataset_bytes(multiframe_dataset("pituitary", n_frames=5, seed=3)))
    assert decoded.kind == "dicom"
    assert decoded.details["n_slices"] == 5
    expected = generate_phantom("pituitary", seed=3 + 2, size=64)  # frame at position index 2
    assert np.corrcoef(decoded.slices[0].ravel(), expected.ravel())[0, 1] > 0.999


def test_two_series_largest_is_chosen_unless_one_is_asked_for() -> None:
    small_uid = generate_uid()
    big = phantom_series("glioma", n_slices=5, seed=1)
    small = phantom_series("pituitary", n_slices=3, seed=2, series_uid=small_uid)
    data = zip_series(big + small)
    decoded = decode_input(data)
    assert decoded.details["n_slices"] == 5
    assert decoded.details["n_series_in_input"] == 2
    chosen = decode_input(data, dicom_selection=SliceSelection(series_uid=small_uid))
    assert chosen.details["n_slices"] == 3
    with pytest.raises(SeriesNotFoundError):
        decode_input(data, dicom_selection=SliceSelection(series_uid="1.2.3.4"))


def test_mixed_shape_series_is_refused() -> None:
    series = phantom_series("glioma", n_slices=3, seed=1, sizes=[64, 64, 48])
    with pytest.raises(InconsistentSeriesError) as info:
        decode_input(zip_series(series))
    assert info.value.code == "inconsistent_series"


def test_zip_without_dicom() -> None:
    with pytest.raises(NoDicomFoundError) as info:
        decode_input(zip_bytes({"readme.txt": b"hello", "notes/a.csv": b"1,2"}))
    assert info.value.code == "no_dicom_in_archive"


def test_dicom_without_pixel_data() -> None:
    ds = phantom_series("glioma", n_slices=1)[0]
    del ds.PixelData
    with pytest.raises(DicomPixelDataError) as info:
        decode_input(dataset_bytes(ds))
    assert info.value.code == "dicom_no_pixel_data"


def test_non_image_dicom_has_no_pixels() -> None:
    with pytest.raises(DicomPixelDataError):
        decode_input(pydicom_file("rtplan.dcm"))


def test_truncated_dicom_pixel_data() -> None:
    with pytest.raises(DicomPixelDataError):
        decode_input(pydicom_file("MR_truncated.dcm"))


@pytest.mark.parametrize(
    "name",
    [
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "CT_small.dcm",
    ],
)
def test_pydicom_bundled_files(name: str) -> None:
    decoded = decode_input(pydicom_file(name))
    pixels = decoded.slices[0]
    assert pixels.shape == (decoded.details["rows"], decoded.details["columns"])
    assert 0.0 <= pixels.min() < pixels.max() <= 1.0


def test_pydicom_mr_small_variants_agree() -> None:
    reference = decode_input(pydicom_file("MR_small.dcm")).slices[0]
    for name in ("MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"):
        np.testing.assert_allclose(decode_input(pydicom_file(name)).slices[0], reference, atol=1e-6)


def test_patient_identifiers_never_appear_in_results_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    patient = FakePatient()
    caplog.set_level(logging.DEBUG)
    decoded = decode_input(zip_series(phantom_series("glioma", n_slices=3, patient=patient)))
    rendered = json.dumps(decoded.details, default=str) + caplog.text
    for value in (
        patient.name,
        "Doe",
        patient.patient_id,
        patient.birth_date,
        patient.accession,
        patient.institution,
        patient.address,
    ):
        assert value not in rendered


@pytest.mark.parametrize("case", list(MALFORMED_VALUES))
@pytest.mark.parametrize("container", ["file", "zip"])
def test_malformed_header_number_is_invalid_dicom(case: str, container: str) -> None:
    """A header number that is not a number is the client's error (HTTP 422), not a crash,
    and the message names the attribute without echoing the untrusted value."""
    keyword, raw = MALFORMED_VALUES[case]
    data = malformed_dicom(keyword, raw)
    if container == "zip":
        data = zip_bytes({"series/a.dcm": data})
    with pytest.raises(InvalidDicomError) as info:
        decode_input(data)
    assert info.value.code == "invalid_dicom"
    assert keyword in str(info.value)
    assert "abc" not in str(info.value) and "\\" not in str(info.value)


def test_negative_number_of_frames_is_invalid_dicom() -> None:
    with pytest.raises(InvalidDicomError, match="NumberOfFrames") as info:
        decode_input(malformed_dicom("NumberOfFrames", b"-3"))
    assert info.value.code == "invalid_dicom"


def test_a_header_claiming_billions_of_frames_is_refused_before_any_is_listed() -> None:
    """2^31 - 1 claimed frames would be a record each (hundreds of GB) before the pixel data,
    which cannot hold them, is read: the frame limit answers first, as a 413."""
    with pytest.raises(InputTooLargeError, match="BRAINMRI_MAX_DICOM_FRAMES") as info:
        decode_input(malformed_dicom("NumberOfFrames", b"2147483647"))
    assert info.value.code == "too_many_frames"


def test_the_frame_limit_counts_frames_of_one_object_and_files_of_a_zip() -> None:
    five_frames = dataset_bytes(multiframe_dataset("glioma", n_frames=5, size=64))
    assert len(decode_input(five_frames, limits=InputLimits(max_dicom_frames=5)).slices) == 1
    with pytest.raises(InputTooLargeError, match="more than 4 slices"):
        decode_input(five_frames, limits=InputLimits(max_dicom_frames=4))

    three_files = zip_series(phantom_series("glioma", n_slices=3, size=64))
    assert decode_input(three_files, limits=InputLimits(max_dicom_frames=3)).slices
    with pytest.raises(InputTooLargeError, match="more than 2 slices") as info:
        decode_input(three_files, limits=InputLimits(max_dicom_frames=2))
    assert info.value.code == "too_many_frames"


def test_a_compressed_bomb_is_refused_from_its_header_before_decoding() -> None:
    """RLE pixel data of a blank 1024 x 1024 frame is ~34 kB for 2 MB decoded; a bomb declares
    hundreds of megapixels the same way. The header alone must answer, as a 413."""
    from pydicom.uid import RLELossless

    ds = phantom_series("glioma", n_slices=1, size=64)[0]
    ds.Rows = ds.Columns = 1024
    ds.compress(RLELossless, np.zeros((1024, 1024), dtype=np.uint16))
    data = dataset_bytes(ds)
    assert len(data) < 64_000
    assert decode_input(data).slices  # within the default limits it decodes
    with pytest.raises(InputTooLargeError, match="BRAINMRI_MAX_IMAGE_PIXELS") as info:
        decode_input(data, limits=InputLimits(max_pixels=1024 * 1024 - 1))
    assert info.value.code == "too_many_pixels"


def test_the_object_pixel_limit_counts_every_frame() -> None:
    five_frames = dataset_bytes(multiframe_dataset("glioma", n_frames=5, size=64))
    exact = InputLimits(max_dicom_object_pixels=5 * 64 * 64)
    assert decode_input(five_frames, limits=exact).slices
    with pytest.raises(InputTooLargeError, match="BRAINMRI_MAX_DICOM_OBJECT_PIXELS") as info:
        decode_input(five_frames, limits=InputLimits(max_dicom_object_pixels=5 * 64 * 64 - 1))
    assert info.value.code == "too_many_pixels"


def _without_top_level_orientation() -> Dataset:
    """An enhanced-style object whose orientation lives only in the shared functional group."""
    ds = phantom_series("glioma", n_slices=1, size=64)[0]
    del ds.ImageOrientationPatient
    plane = Dataset()
    plane.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    group = Dataset()
    group.PlaneOrientationSequence = DicomSequence([plane])
    ds.SharedFunctionalGroupsSequence = DicomSequence([group])
    return ds


def test_malformed_header_structures_are_invalid_dicom() -> None:
    nested = with_raw_value(  # same length as "1.0\\0.0\\..." so the sequence stays intact
        _without_top_level_orientation(), "ImageOrientationPatient", b"a\\b\\c\\d\\e\\f".ljust(24)
    )
    flat = _without_top_level_orientation()
    del flat.SharedFunctionalGroupsSequence
    flat.add_new(Tag("SharedFunctionalGroupsSequence"), "LO", "not a sequence")
    no_descriptor = phantom_series("glioma", n_slices=1, size=64)[0]
    no_descriptor.ModalityLUTSequence = DicomSequence([lut_item(None, list(range(4096)))])
    short_descriptor = phantom_series("glioma", n_slices=1, size=64)[0]
    short_descriptor.VOILUTSequence = DicomSequence([lut_item([4096, 0], list(range(4096)))])
    cases = {
        "ImageOrientationPatient": nested,
        "SharedFunctionalGroupsSequence": dataset_bytes(flat),
        "ModalityLUTSequence": dataset_bytes(no_descriptor),
        "VOILUTSequence": dataset_bytes(short_descriptor),
    }
    for keyword, data in cases.items():
        with pytest.raises(InvalidDicomError, match=keyword) as info:
            decode_input(data)
        assert info.value.code == "invalid_dicom"
    # The well-formed original of the first two still decodes through the nested orientation.
    assert decode_input(dataset_bytes(_without_top_level_orientation())).details["n_slices"] == 1
