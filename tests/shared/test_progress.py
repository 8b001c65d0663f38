"""Progress bars: live on a terminal, a line now and then in a log file."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from brainmri.progress import LOG_INTERVAL_S, progress_bar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_usual_redraw_rate() -> None:
    bar = progress_bar(range(3), file=FakeTerminal())
    assert bar.mininterval == pytest.approx(0.1)
    bar.close()


def test_a_log_file_gets_a_redraw_every_interval_at_most() -> None:
    log = io.StringIO()
    bar = progress_bar(total=500, file=log, desc="work")
    assert bar.mininterval == LOG_INTERVAL_S
    assert bar.maxinterval == LOG_INTERVAL_S  # no forced redraw from tqdm's monitor thread
    for step in range(500):
        bar.set_postfix(loss=f"{1 / (step + 1):.4f}", refresh=False)
        bar.update(1)
    bar.close()
    # the first draw and the final one on close; not one per step
    assert log.getvalue().count("work:") <= 2


def test_tqdm_environment_setting_still_wins() -> None:
    """tqdm reads TQDM_* when it is imported, hence a fresh interpreter."""
    code = (
        "import io; from brainmri.progress import progress_bar; "
        "print(progress_bar(range(3), file=io.StringIO()).mininterval)"
    )
    env = {**os.environ, "TQDM_MININTERVAL": "5"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert float(out.stdout) == pytest.approx(5.0)
