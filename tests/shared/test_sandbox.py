"""The decode sandbox on real spawned children: its time limit is a decode's own run time (not
time queued behind other uploads), and a hung decode costs only its own child - concurrent
callers' decodes finish normally.

Slow and hung decodes are plain functions run through ``DecodeSandbox.run`` like any decoder.
The CPU is shared with other jobs, so every duration leaves seconds of slack; the few lower
bounds on elapsed time are what the sandbox itself guarantees (sleeps cannot be shortened).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from brainmri.errors import (
    InputError,
    InputTooLargeError,
    UndecodableImageError,
    UnsupportedFormatError,
)
from brainmri.imaging.dicom import SliceSelection
from brainmri.imaging.ingest import SanitizedUpload, sanitize_upload
from brainmri.imaging.limits import InputLimits
from brainmri.imaging.sandbox import DecodeSandbox, sweep_stale_scratch
from brainmri.phantom import phantom_png

pytestmark = pytest.mark.slow

START_WAIT = 120.0  # a child importing its decoders on a busy machine


def pid_after(seconds: float) -> int:
    """A legitimate decode that takes ``seconds``; says which child ran it."""
    time.sleep(seconds)
    return os.getpid()


def hang(pid_file: str) -> None:
    """A hostile decode: announces its child, then never finishes."""
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(3600)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + START_WAIT
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., DecodeSandbox]]:
    made: list[DecodeSandbox] = []

    def make(**kwargs: float) -> DecodeSandbox:
        # Unconfined: these tests run functions of this module, which a confined child could
        # not import (tests/shared/test_confine.py covers confinement).
        sandbox = DecodeSandbox(confine=False, **kwargs)  # type: ignore[arg-type]
        made.append(sandbox)
        sandbox.warm_up()
        return sandbox

    yield make
    for sandbox in made:
        sandbox.close()


def test_more_concurrent_decodes_than_processes_all_succeed(make_sandbox) -> None:
    # 6 decodes of 2.5 s on 2 children: 3 rounds, 7.5 s in all - longer than the 6 s limit,
    # which a queued decode would exceed if its wait counted; each run alone has 3.5 s spare.
    sandbox = make_sandbox(processes=2, timeout=6.0)
    sandbox.run(os.getpid)  # both children started: start-up is not what is measured
    started = time.monotonic()
    with ThreadPoolExecutor(6) as threads:
        futures = [threads.submit(sandbox.run, pid_after, 2.5) for _ in range(6)]
        pids = [future.result() for future in futures]
    elapsed = time.monotonic() - started
    assert len(pids) == 6
    assert len(set(pids)) <= 2  # the same two warm children ran everything, none replaced
    assert elapsed >= 3 * 2.5 - 0.2  # never more than two decodes at once


def test_a_hung_decode_times_out_while_a_concurrent_decode_succeeds(
    make_sandbox, tmp_path: Path
) -> None:
    sandbox = make_sandbox(processes=2, timeout=10.0)
    sandbox.run(os.getpid)
    pid_file = tmp_path / "hung.pid"
    with ThreadPoolExecutor(2) as threads:
        submitted = time.monotonic()
        hung = threads.submit(sandbox.run, hang, str(pid_file))
        wait_for(pid_file)
        time.sleep(5.0)
        # runs from ~5 s to ~12 s of the hung decode: in flight when that one is killed at
        # 10 s, and 3 s inside its own limit
        legit = threads.submit(sandbox.run, pid_after, 7.0)
        with pytest.raises(InputError) as stopped:
            hung.result()
        hung_elapsed = time.monotonic() - submitted
        assert not legit.done(), "the legitimate decode should straddle the timeout"
        legit_pid = legit.result()
    assert stopped.value.code == "decode_timeout"
    assert 10.0 - 0.2 <= hung_elapsed < 10.0 + START_WAIT  # its clock starts after submit
    hung_pid = int(pid_file.read_text())
    assert not alive(hung_pid)  # the hung child was killed (and reaped)
    assert alive(legit_pid)  # the other child was not touched
    assert legit_pid != hung_pid


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for whatever init reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux /proc")
def test_a_hung_decode_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    """A parent killed mid-decode (a Celery hard time limit, the OOM killer) can no longer
    kill its hung child; the child must notice and end by itself, not spin forever."""
    pid_file = tmp_path / "hung.pid"
    script = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parents[2])!r})\n"
        "from brainmri.imaging.sandbox import DecodeSandbox\n"
        "from tests.shared.test_sandbox import hang\n"
        f"DecodeSandbox(processes=1, timeout=3600, confine=False).run(hang, {str(pid_file)!r})\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        wait_for(pid_file)
        child = int(pid_file.read_text())
        time.sleep(1.5)
        assert running(child)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 15.0
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    if running(child):
        os.kill(child, signal.SIGKILL)
        pytest.fail("the decode child outlived its killed parent")


def test_the_sandbox_keeps_working_after_a_timeout(make_sandbox) -> None:
    sandbox = make_sandbox(processes=1, timeout=4.0)
    first = sandbox.run(os.getpid)
    for _ in range(2):
        with pytest.raises(InputError) as stopped:
            sandbox.run(time.sleep, 3600)
        assert stopped.value.code == "decode_timeout"
        # a replacement child, whose start-up is not charged to the next decode's 4 s
        assert sandbox.run(pid_after, 1.0) != first
    assert not alive(first)


def test_a_crashing_decoder_fails_fast_and_costs_only_its_child(make_sandbox) -> None:
    sandbox = make_sandbox(processes=1, timeout=60.0)
    first = sandbox.run(os.getpid)
    started = time.monotonic()
    with pytest.raises(UndecodableImageError) as crashed:
        sandbox.run(os._exit, 3)
    assert crashed.value.code == "decode_crashed"
    assert time.monotonic() - started < 30.0  # noticed at once, not after the time limit
    assert sandbox.run(os.getpid) != first


def test_real_decodes_and_their_input_errors_come_back(make_sandbox) -> None:
    sandbox = make_sandbox(processes=1, timeout=60.0)
    limits, selection = InputLimits(), SliceSelection()
    clean = sandbox.run(sanitize_upload, phantom_png("glioma", seed=3, size=64), limits, selection)
    assert isinstance(clean, SanitizedUpload)
    assert clean.data.startswith(b"\x89PNG")
    with pytest.raises(UnsupportedFormatError):
        sandbox.run(sanitize_upload, b"this is not an image at all", limits, selection)


def test_the_memory_cap_becomes_decode_memory_limit(make_sandbox) -> None:
    sandbox = make_sandbox(processes=1, timeout=60.0, memory_mb=2048)
    first = sandbox.run(os.getpid)
    with pytest.raises(InputTooLargeError) as refused:
        sandbox.run(bytearray, 4 * 1024**3)
    assert refused.value.code == "decode_memory_limit"
    assert sandbox.run(os.getpid) == first  # an ordinary input error: the child carries on


def test_close_stops_idle_children_and_a_later_run_starts_new_ones(make_sandbox) -> None:
    sandbox = make_sandbox(processes=2, timeout=60.0)
    first = sandbox.run(os.getpid)
    sandbox.close()
    assert not alive(first)
    assert sandbox.run(os.getpid) != first


def test_a_child_is_replaced_after_its_share_of_decodes(make_sandbox) -> None:
    """``tasks_per_child`` (``BRAINMRI_DECODE_CHILD_MAX_TASKS``): a fresh child takes over."""
    sandbox = make_sandbox(processes=1, timeout=60.0, tasks_per_child=3)
    pids = [sandbox.run(os.getpid) for _ in range(7)]
    assert pids[0] == pids[1] == pids[2]
    assert pids[3] == pids[4] == pids[5] != pids[0]
    assert pids[6] not in (pids[0], pids[3])
    assert not alive(pids[0])


def test_stale_scratch_folders_of_dead_children_are_swept(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs
    dead = tmp_path / f"brainmri-decode-{gone.pid}-abc"
    (dead / "series").mkdir(parents=True)
    (dead / "series" / "IMG0001.dcm").write_bytes(b"half-unzipped, not yet de-identified")
    alive_one = tmp_path / f"brainmri-decode-{os.getpid()}-def"
    alive_one.mkdir()
    odd = tmp_path / "brainmri-decode-notapid-ghi"
    odd.mkdir()
    assert sweep_stale_scratch(tmp_path) == [dead]
    assert not dead.exists() and alive_one.is_dir() and odd.is_dir()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux /proc")
def test_a_killed_parents_scratch_is_removed_by_the_next_sandbox() -> None:
    """The parent killed mid-decode cannot clean up; the next sandbox to start does."""
    before = set(Path(tempfile.gettempdir()).glob("brainmri-decode-*"))
    script = (
        "import time\n"
        "from brainmri.imaging.sandbox import DecodeSandbox\n"
        "DecodeSandbox(processes=1, timeout=3600, confine=True).run(time.sleep, 3600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + START_WAIT
        while not (new := set(Path(tempfile.gettempdir()).glob("brainmri-decode-*")) - before):
            assert time.monotonic() < deadline, "the child made no scratch folder"
            time.sleep(0.1)
        (scratch,) = new
        child = int(scratch.name.split("-")[2])
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 15.0
    while running(child):
        assert time.monotonic() < deadline, "the decode child outlived its killed parent"
        time.sleep(0.1)
    assert scratch.is_dir()  # nobody was left to remove it
    sandbox = DecodeSandbox(processes=1, confine=True)
    try:
        sandbox.warm_up()
    finally:
        sandbox.close()
    assert not scratch.exists()
