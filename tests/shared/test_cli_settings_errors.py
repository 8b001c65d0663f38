"""A bad or empty environment variable, as every ``brainmri`` process meets it.

Before, an empty optional variable (an uncommented ``# TUMOR_THRESH=`` line of .env.example)
crashed every process with a pydantic traceback naming ``BRAINMRI_TUMOR_THRESH`` even when
``TUMOR_THRESH`` was the one set, and ``BRAINMRI_MODEL_DIR=`` silently became ``.``. Now empty
means unset, and a bad value is one line naming the variable the user set, exit status 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from brainmri.cli.main import main
from brainmri.config import Settings, get_settings
from brainmri.phantom import phantom_png

EMPTY_OPTIONAL = (
    "TUMOR_THRESH",
    "BRAINMRI_TUMOR_THRESH",
    "BRAINMRI_MODEL_DIR",
    "BRAINMRI_RETRAIN_EPOCHS",
    "BRAINMRI_BROKER_VISIBILITY_TIMEOUT_SECONDS",
    "BRAINMRI_RETRAIN_TIME_BUDGET_MINUTES",
    "BRAINMRI_DATA_DIR",
)


def clean_env(**variables: str) -> dict[str, str]:
    """This process's environment without any setting, plus ``variables``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("BRAINMRI_") and key != "TUMOR_THRESH"
    }
    return {**env, **variables}


def brainmri(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "brainmri.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_empty_variables_keep_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("BRAINMRI_"):
            monkeypatch.delenv(key)
    for name in EMPTY_OPTIONAL:
        monkeypatch.setenv(name, "")
    settings = Settings()
    assert settings.tumor_thresh is None
    assert settings.model_dir is None
    assert "model_dir" not in settings.model_fields_set  # unset, not Path("") == "."
    assert settings.retrain_epochs is None
    assert settings.broker_visibility_timeout_seconds is None
    assert settings.retrain_time_budget_minutes is None
    assert settings.data_dir == Path("var").resolve()  # not the working directory


def test_predict_with_empty_variables_uses_the_bundle_threshold(
    tmp_path: Path, random_bundle_dir: Path
) -> None:
    image = tmp_path / "scan.png"
    image.write_bytes(phantom_png("glioma", seed=4, size=80))
    env = clean_env(**dict.fromkeys(EMPTY_OPTIONAL, ""))
    result = brainmri("predict", str(image), "--model", str(random_bundle_dir), env=env)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["threshold"] == 0.22  # the test bundle has no validated threshold


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A clean settings environment, read afresh by main(); the cache is cleared after too."""
    for key in list(os.environ):
        if key.startswith("BRAINMRI_") or key == "TUMOR_THRESH":
            monkeypatch.delenv(key)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("TUMOR_THRESH", "abc", "valid number"),
        ("BRAINMRI_TUMOR_THRESH", "-1", "greater than or equal to 0"),
        ("BRAINMRI_RETRAIN_EPOCHS", "0", "greater than or equal to 1"),
        ("BRAINMRI_BROKER_VISIBILITY_TIMEOUT_SECONDS", "soon", "valid integer"),
        ("BRAINMRI_S3_SECURE", "maybe", "valid boolean"),
        ("BRAINMRI_RETRAIN_SCHEDULE", "0 3 * *", "must have 5 fields"),
        ("BRAINMRI_RETRAIN_SCHEDULE", "61 3 * * *", "invalid cron expression"),
    ],
)
def test_a_bad_value_names_the_variable_and_exits_2(
    tmp_path: Path,
    fresh_settings: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    problem: str,
) -> None:
    fresh_settings.setenv(variable, value)
    assert main(["predict", str(tmp_path / "scan.png")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error [configuration_error]: invalid setting ")
    assert f"{variable}={value!r}: " in captured.err
    assert problem in captured.err


def test_the_alias_the_user_set_is_named_not_pydantics_first_one(
    tmp_path: Path, fresh_settings: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh_settings.setenv("BRAINMRI_TUMOR_THRESH", "")  # empty: ignored, so not the culprit
    fresh_settings.setenv("TUMOR_THRESH", "0,3")
    assert main(["predict", str(tmp_path / "scan.png")]) == 2
    err = capsys.readouterr().err
    assert "TUMOR_THRESH='0,3'" in err
    assert "BRAINMRI_TUMOR_THRESH" not in err


def test_a_bad_value_is_one_line_without_traceback_in_a_real_process(tmp_path: Path) -> None:
    result = brainmri("predict", str(tmp_path / "scan.png"), env=clean_env(TUMOR_THRESH="1.5"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error [configuration_error]: invalid setting TUMOR_THRESH='1.5': "
        "Input should be less than or equal to 1"
    ]


def test_a_startup_check_is_one_line_too(
    tmp_path: Path, fresh_settings: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh_settings.setenv("BRAINMRI_RETRAIN_TIME_BUDGET_MINUTES", "999999")
    assert main(["predict", str(tmp_path / "scan.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error [configuration_error]: BRAINMRI_RETRAIN_TIME_BUDGET_MINUTES=")
    assert err.count("\n") == 1


def test_port_is_read_only_by_serve_and_a_bad_one_is_one_line() -> None:
    """`PORT` used to be parsed while every command's parser was built: an empty or bad value
    crashed `brainmri predict --help` with a traceback."""
    assert brainmri("predict", "--help", env=clean_env(PORT="")).returncode == 0
    assert brainmri("settings", env=clean_env(PORT="abc")).returncode == 0
    result = brainmri("serve", env=clean_env(PORT="abc"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error [configuration_error]: PORT='abc' is not a port number (1-65535)"
    ]
