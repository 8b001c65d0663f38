"""``brainmri_upload_sandbox_confined``: what the API's decode children hold, for alerts.

Unknown (no sample) until a child has started; after ``warm_up`` (the API's start-up), one
sample per guard from what the child reported; with confinement turned off, every guard 0.
"""

from __future__ import annotations

from brainmri.imaging.confine import landlock_abi
from brainmri.imaging.sandbox import DecodeSandbox
from brainmri_api.observability import SandboxCollector


def guards(sandbox: DecodeSandbox) -> dict[str, float]:
    return {
        sample.labels["guard"]: sample.value
        for family in SandboxCollector(sandbox).collect()
        for sample in family.samples
    }


def test_confined_children_report_each_guard_after_warm_up() -> None:
    sandbox = DecodeSandbox(processes=1, confine=True)
    try:
        assert guards(sandbox) == {}  # nothing started: unknown, not 0
        sandbox.warm_up()  # waits for the child's report
        assert sandbox.confinement is not None
        reported = guards(sandbox)
        assert set(reported) == {"files", "tcp", "signals", "sockets"}
        assert reported["files"] == float(landlock_abi() > 0)
        assert reported["sockets"] == float(sandbox.confinement.sockets)
    finally:
        sandbox.close()


def test_confinement_turned_off_shows_as_zeros() -> None:
    sandbox = DecodeSandbox(processes=1, confine=False)
    try:
        assert guards(sandbox) == dict.fromkeys(("files", "tcp", "signals", "sockets"), 0.0)
    finally:
        sandbox.close()
