"""Documentation that must stay in step with the code."""

from __future__ import annotations

from brainmri.cli.settings_doc import END, START, markdown_table, readme_with_table
from brainmri.config import Settings
from tests.conftest import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"


def test_readme_settings_table_matches_the_code() -> None:
    text = README.read_text()
    assert START in text and END in text
    assert readme_with_table(text) == text, "run `make docs` to regenerate the settings table"


def test_every_setting_is_documented_with_a_description() -> None:
    table = markdown_table()
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description"
        assert f"`BRAINMRI_{name.upper()}`" in table
    assert "`TUMOR_THRESH`" in table


def test_readme_says_not_a_medical_device() -> None:
    assert "not a medical device" in README.read_text()
