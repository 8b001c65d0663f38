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


def test_env_example_defaults_match_the_code() -> None:
    """Commented `# BRAINMRI_X=value` lines in .env.example show the code's default.

    Variables that docker-compose.yml sets itself are shown with the stack's values instead.
    """
    import re

    from brainmri.cli.settings_doc import _default, env_names

    compose = (PROJECT_ROOT / "docker-compose.yml").read_text()
    set_by_compose = set(re.findall(r"(BRAINMRI_[A-Z0-9_]+)\s*:", compose))
    defaults = {
        env_names(name, field)[0]: _default(field) for name, field in Settings.model_fields.items()
    }
    shown = {}
    for line in (PROJECT_ROOT / ".env.example").read_text().splitlines():
        if line.startswith("# BRAINMRI_") and "=" in line:
            name, _, value = line[2:].partition("=")
            if " " not in value:  # prose that merely mentions a setting is not a default
                shown[name] = value
    assert shown, "no commented defaults found in .env.example"
    stale = {
        name: (value, defaults[name])
        for name, value in shown.items()
        if name in defaults and name not in set_by_compose and value != defaults[name]
    }
    assert stale == {}, f"update .env.example (shown, code): {stale}"
