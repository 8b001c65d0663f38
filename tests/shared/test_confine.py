"""The decode sandbox's children are confined (Linux Landlock): code running in one - a decoder
exploit, here stood in for by ordinary library calls run through ``DecodeSandbox.run`` - cannot
read the API's environment or files, make TCP connections, create any socket (seccomp) or
write outside its own scratch folder, and has no environment of its own; every accepted input
still decodes.

The calls are standard-library functions, picklable by reference, because a confined child
can import only from the Python installation and the brainmri package, not from tests/.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from brainmri.imaging.confine import landlock_abi
from brainmri.imaging.dicom import SliceSelection
from brainmri.imaging.ingest import sanitize_upload
from brainmri.imaging.limits import InputLimits
from brainmri.imaging.sandbox import DecodeSandbox
from brainmri.phantom import phantom_png
from brainmri.phantom_dicom import dataset_bytes, phantom_series, zip_series
from tests.helpers import encode, grey_image

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(landlock_abi() < 4, reason="needs Linux Landlock ABI 4+ (Linux 6.7+)"),
]

SECRET = "BRAINMRI_TEST_CONFINE_SECRET"


@pytest.fixture(scope="module")
def confined() -> Iterator[DecodeSandbox]:
    os.environ[SECRET] = "hunter2"  # in the API's environment when its children start
    sandbox = DecodeSandbox(processes=1, confine=True)
    try:
        sandbox.warm_up()
        yield sandbox
    finally:
        sandbox.close()
        del os.environ[SECRET]


def test_the_child_reports_what_it_could_confine(confined: DecodeSandbox) -> None:
    state = confined.run(os.getpid) and confined.confinement
    assert state is not None
    assert state.files and state.tcp and state.sockets and state.abi >= 4, state


def test_the_apis_environment_and_files_are_out_of_reach(
    confined: DecodeSandbox, tmp_path: Path
) -> None:
    api = Path(f"/proc/{os.getpid()}/environ")
    # Any other process of this user reads the API's start-up environment (its secrets, in a
    # deployment): what an exploit would be after.
    assert b"PATH=" in api.read_bytes()
    with pytest.raises(PermissionError):
        confined.run(Path.read_bytes, api)
    secret_file = tmp_path / "api-keys.env"
    secret_file.write_text("BRAINMRI_API_KEYS=k:admin\n")
    with pytest.raises(PermissionError):
        confined.run(Path.read_text, secret_file)
    with pytest.raises(PermissionError):
        confined.run(Path.write_text, tmp_path / "dropped.sh", "echo owned")
    assert not (tmp_path / "dropped.sh").exists()


def test_the_child_has_no_environment(confined: DecodeSandbox) -> None:
    assert confined.run(os.getenv, SECRET) is None
    assert confined.run(os.getenv, "PATH") is None


def test_no_tcp_connection_leaves_the_child() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    sandbox = DecodeSandbox(processes=1, confine=True)
    try:
        with pytest.raises(PermissionError):
            sandbox.run(socket.create_connection, ("127.0.0.1", port), 2.0)
        with pytest.raises(socket.timeout):
            listener.accept()  # nothing ever arrived
    finally:
        sandbox.close()
        listener.close()


def test_scratch_files_stay_in_the_childs_folder_which_close_removes() -> None:
    sandbox = DecodeSandbox(processes=1, confine=True)
    try:
        _, name = sandbox.run(tempfile.mkstemp)
        scratch = Path(name).parent
        assert scratch.name.startswith("brainmri-decode-") and scratch.is_dir()
    finally:
        sandbox.close()
    assert not scratch.exists()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(lambda: phantom_png("glioma", seed=1, size=96), id="png"),
        pytest.param(lambda: encode(grey_image(), "JPEG"), id="jpeg"),
        pytest.param(lambda: encode(grey_image(), "TIFF"), id="tiff"),
        pytest.param(lambda: encode(grey_image(), "BMP"), id="bmp"),
        pytest.param(
            lambda: dataset_bytes(phantom_series("pituitary", n_slices=1, seed=2)[0]), id="dicom"
        ),
        pytest.param(
            lambda: zip_series(phantom_series("meningioma", n_slices=5, seed=3)), id="dicom-zip"
        ),
    ],
)
def test_every_accepted_input_still_decodes(confined: DecodeSandbox, data) -> None:  # type: ignore[no-untyped-def]
    clean = confined.run(sanitize_upload, data(), InputLimits(), SliceSelection())
    assert clean.data and clean.extension in (".png", ".dcm", ".zip")


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "aarch64"), reason="no socket filter")
@pytest.mark.parametrize(
    "call",
    [
        (socket.socket, socket.AF_INET, socket.SOCK_DGRAM),  # UDP: a DNS query would leak
        (socket.socket, socket.AF_INET6, socket.SOCK_DGRAM),
        (socket.socket, socket.AF_UNIX, socket.SOCK_STREAM),
        (socket.socketpair,),
    ],
    ids=["udp", "udp6", "unix", "socketpair"],
)
def test_no_socket_of_any_kind_can_be_made(confined: DecodeSandbox, call: tuple) -> None:
    """Landlock stops TCP only; the seccomp filter stops every new socket, so nothing a
    decoder sees (the next uploads, DICOM headers before de-identification) can be sent out."""
    assert confined.confinement is not None and confined.confinement.sockets
    with pytest.raises(PermissionError):
        confined.run(*call)
