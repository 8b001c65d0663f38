"""Bootstrap resample counts on the command line: a count too small for a 95% interval, or a
negative one, is a usage error naming the rule, not a report with meaningless intervals."""

from __future__ import annotations

import pytest

from brainmri.cli.main import build_parser


def parse(*argv: str) -> int:
    return build_parser().parse_args(list(argv)).bootstrap


EVAL = ("eval", "--data", "slices", "--out", "out")
COMPARE = ("compare", "run-a", "run-b")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((*EVAL, "--bootstrap", "-5"), "must be 0 or more, got -5"),
        ((*EVAL, "--bootstrap", "50"), "at least 100 resamples, got 50"),
        ((*EVAL, "--bootstrap", "many"), "expected a whole number, got 'many'"),
        ((*COMPARE, "--bootstrap", "0"), "at least 100 resamples, got 0"),
        ((*COMPARE, "--bootstrap", "99"), "at least 100 resamples, got 99"),
    ],
)
def test_too_few_resamples_are_refused(
    argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse(*argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_eval_takes_zero_for_no_intervals_and_any_count_from_100() -> None:
    assert parse(*EVAL) == 0
    assert parse(*EVAL, "--bootstrap", "0") == 0
    assert parse(*EVAL, "--bootstrap", "100") == 100
    assert parse(*COMPARE) == 2000
    assert parse(*COMPARE, "--bootstrap", "100") == 100
