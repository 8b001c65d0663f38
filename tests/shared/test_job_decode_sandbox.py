"""Job decoding through the decode sandbox: the same pixels, tensors, thumbnails and errors
as decoding in-process, but computed in a confined child.

Workers (predict, evaluate) and the train job decode files that never passed the API's upload
sandbox (S3 prefixes, allowed folders, a DICOM zip's compressed pixel data). Each path that
takes a sandbox is run here twice, with and without one, on real generated files; the
sandbox's own report of its child's confinement shows the decode really ran there.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from brainmri.config import Settings
from brainmri.data.builder import fingerprint_images, scan_class_folders
from brainmri.data.manifest import Sample
from brainmri.errors import InputError
from brainmri.imaging.confine import landlock_abi
from brainmri.imaging.sandbox import DecodeSandbox
from brainmri.inference.engine import InferenceEngine
from brainmri.jobs.decoding import job_decode_sandbox
from brainmri.models.bundle import load_bundle
from brainmri.phantom import generate_phantom, phantom_png, write_phantom_dataset
from brainmri.phantom_dicom import phantom_series, zip_series
from brainmri.preprocess import PreprocessConfig
from brainmri.training.data import build_cache
from tests.conftest import make_bundle

pytestmark = pytest.mark.slow


@pytest.fixture
def sandbox() -> Iterator[DecodeSandbox]:
    """A new sandbox per test, so that what it reports comes from that test's decodes."""
    box = DecodeSandbox(processes=2, timeout=60.0, confine=True)
    yield box
    box.close()


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sandbox-bundle") / "model"
    make_bundle(directory, img_size=64, seed=3)
    return directory


def png16(size: int = 80) -> bytes:
    """A 12-bit slice stored as 16-bit PNG: the robust-scale path, not the 8-bit one."""
    pixels = generate_phantom("glioma", seed=4, size=size).astype(np.uint16) * 16
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


INPUTS = {
    "png": lambda: phantom_png("meningioma", seed=2, size=90),
    "png16": png16,
    "dicom_zip": lambda: zip_series(phantom_series("pituitary", n_slices=5, size=64, seed=6)),
}


def assert_confined(box: DecodeSandbox) -> None:
    """The child that decoded said it confined itself (where the kernel can)."""
    assert box.confinement is not None, "no decode ran in the sandbox"
    if landlock_abi() > 0:
        assert box.confinement.files, box.confinement.reason


@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_engine_prepares_the_same_input_in_the_sandbox(
    kind: str, bundle_dir: Path, sandbox: DecodeSandbox
) -> None:
    data = INPUTS[kind]()
    here = InferenceEngine(load_bundle(bundle_dir), device="cpu").prepare_bytes(data)
    boxed_engine = InferenceEngine(load_bundle(bundle_dir), device="cpu", sandbox=sandbox)
    boxed = boxed_engine.prepare_bytes(data)
    assert boxed.decoded.kind == here.decoded.kind
    assert boxed.decoded.details == here.decoded.details
    assert len(boxed.tensors) == len(here.tensors) >= 1
    for a, b in zip(boxed.tensors, here.tensors, strict=True):
        assert torch.equal(a, b)
    assert_confined(sandbox)


def test_bad_inputs_keep_their_error_at_their_own_index(
    bundle_dir: Path, sandbox: DecodeSandbox
) -> None:
    good = phantom_png("glioma", seed=8, size=72)
    sources: list[bytes] = [good, good[: len(good) // 3], b"plain text, not an image", good]
    here = InferenceEngine(load_bundle(bundle_dir), device="cpu").predict_sources(sources)
    boxed = InferenceEngine(load_bundle(bundle_dir), device="cpu", sandbox=sandbox).predict_sources(
        sources
    )
    assert [type(r).__name__ for r in boxed] == [type(r).__name__ for r in here]
    for mine, theirs in zip(boxed, here, strict=True):
        if isinstance(theirs, InputError):
            assert isinstance(mine, InputError)
            assert mine.code == theirs.code
        else:
            assert not isinstance(mine, InputError)
            assert mine.class_probs == pytest.approx(theirs.class_probs, abs=1e-9)
    assert isinstance(boxed[1], InputError) and isinstance(boxed[2], InputError)
    assert_confined(sandbox)


def test_training_cache_and_dataset_thumbnails_match(
    tmp_path: Path, sandbox: DecodeSandbox
) -> None:
    write_phantom_dataset(tmp_path, per_class=2, size=70, seed=9)
    (tmp_path / "glioma" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    items, _ = scan_class_folders([tmp_path])
    samples = [Sample(item.path, item.class_name) for item in items]
    classes = ["no_tumor", "glioma", "meningioma", "pituitary"]
    preprocess = PreprocessConfig()
    kwargs = {"size": 48, "as_uint8": True, "progress": False}
    here = build_cache(samples, classes, preprocess, **kwargs)  # type: ignore[arg-type]
    boxed = build_cache(samples, classes, preprocess, sandbox=sandbox, **kwargs)  # type: ignore[arg-type]
    assert torch.equal(boxed.images, here.images)
    assert boxed.sha256 == here.sha256
    assert len(boxed.failures) == len(here.failures) == 1
    assert "broken.png" in boxed.failures[0]
    assert_confined(sandbox)

    other = DecodeSandbox(processes=1, timeout=60.0, confine=True)
    try:
        plain = fingerprint_images(items, progress=False)
        confined = fingerprint_images(items, progress=False, sandbox=other)
        assert_confined(other)
    finally:
        other.close()
    for a, b in zip(confined, plain, strict=True):
        assert (a.sha256, a.error is None) == (b.sha256, b.error is None)
        if b.thumbnail is not None:
            assert a.thumbnail is not None and np.array_equal(a.thumbnail, b.thumbnail)


def test_one_sandbox_per_process_and_none_when_turned_off() -> None:
    settings = Settings(decode_workers=1)
    first = job_decode_sandbox(settings)
    assert first is not None and first.processes == 1
    assert job_decode_sandbox(Settings(decode_workers=1)) is first
    assert job_decode_sandbox(Settings(decode_workers=2)) is not first
    assert job_decode_sandbox(Settings(worker_decode_sandbox=False)) is None

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a forked job process (Celery prefork) must not share its parent's children
        os.close(read)
        os.write(write, b"1" if job_decode_sandbox(settings) is not first else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    os.close(read)
    assert answer == b"1"
