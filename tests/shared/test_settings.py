from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.settings import BrowserSettings, load_settings
from tests.conftest import kansli


def test_defaults_work_without_env_file(kansli_env: Path) -> None:
    settings = load_settings()
    assert settings.browser.locale == "sv-SE"
    assert settings.browser.timezone == "Europe/Stockholm"
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.effective_database_url.endswith("data/kansli.db")


def test_nested_env_and_env_file(kansli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (kansli_env / ".env").write_text("KANSLI_BROWSER__HEADLESS=false\nKANSLI_RETRY__ATTEMPTS=7\n")
    monkeypatch.setenv("KANSLI_BROWSER__TIMEOUT_MS", "1234")
    settings = load_settings()
    assert settings.browser.headless is False
    assert settings.retry.attempts == 7
    assert settings.browser.timeout_ms == 1234


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANSLI_RETRY__ATTEMPTS", "många")
    with pytest.raises(ConfigError, match="KANSLI_RETRY__ATTEMPTS"):
        load_settings()


def test_secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "kansli_database_url").write_text("sqlite:////tmp/from-secret.db")
    monkeypatch.setenv("KANSLI_SECRETS_DIR", str(secrets))
    assert load_settings().database_url == "sqlite:////tmp/from-secret.db"


def test_cli_config_masks_secrets(kansli_env: Path) -> None:
    (kansli_env / ".env").write_text("KANSLI_ESERVICE__PASSWORD=kanariefågel-9911\n", encoding="utf-8")
    result = kansli("config", cwd=kansli_env)
    assert result.returncode == 0, result.stderr
    assert "KANSLI_ESERVICE__PASSWORD = **********" in result.stdout
    assert "kanariefågel-9911" not in result.stdout + result.stderr


def test_cli_bad_env_value_is_one_line_and_exit_4(kansli_env: Path) -> None:
    (kansli_env / ".env").write_text("KANSLI_BROWSER__HEADLESS=kanske\n")
    result = kansli("runs", cwd=kansli_env)
    assert result.returncode == 4
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "KANSLI_BROWSER__HEADLESS" in lines[0]


def test_chromium_detection_prefers_the_headless_shell_when_headless(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Detection on PATH: headless runs take the headless shell, headed runs and fallbacks `chromium`."""
    for name in ("chromium", "chromium-headless-shell"):
        (tmp_path / name).symlink_to(shutil.which(name) or f"/usr/bin/{name}")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert BrowserSettings().chromium_path() == tmp_path / "chromium-headless-shell"
    assert BrowserSettings(headless=False).chromium_path() == tmp_path / "chromium"
    (tmp_path / "chromium-headless-shell").unlink()
    assert BrowserSettings().chromium_path() == tmp_path / "chromium"
    assert BrowserSettings(executable_path=Path("/opt/x/chrome")).chromium_path() == Path("/opt/x/chrome")
    (tmp_path / "chromium").unlink()
    assert BrowserSettings().chromium_path() is None


@pytest.mark.parametrize("value", ["1280", "1280x", "0x720", "1280X720", "12800x720"])
def test_a_bad_viewport_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("KANSLI_BROWSER__VIEWPORT", value)
    with pytest.raises(ConfigError, match="KANSLI_BROWSER__VIEWPORT"):
        load_settings()
    monkeypatch.setenv("KANSLI_BROWSER__VIEWPORT", "1024x640")
    assert load_settings().browser.viewport_size == (1024, 640)


# -- the settings file kansli.toml ---------------------------------------------------------------


def test_settings_file_sets_target_limits_and_variables_override_it(
    kansli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (kansli_env / "kansli.toml").write_text(
        '[targets.eservice]\nmax_sessions = 3\n\n[browser]\nheadless = false\ntimeout_ms = 4000\n',
        encoding="utf-8")
    settings = load_settings()
    assert settings.targets["eservice"].max_sessions == 3 and settings.browser.headless is False
    monkeypatch.setenv("KANSLI_TARGETS__ESERVICE__MAX_SESSIONS", "5")
    monkeypatch.setenv("KANSLI_BROWSER__HEADLESS", "true")
    overridden = load_settings()
    assert overridden.targets["eservice"].max_sessions == 5
    assert overridden.browser.headless is True and overridden.browser.timeout_ms == 4000


def test_settings_file_named_by_variable_and_its_errors_name_file_key_and_line(
    kansli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = kansli_env / "etc" / "kansli-prod.toml"
    file.parent.mkdir()
    monkeypatch.setenv("KANSLI_CONFIG_FILE", str(file))
    with pytest.raises(ConfigError, match=r"settings file .*kansli-prod.toml not found \(KANSLI_CONFIG"):
        load_settings()
    file.write_text("[targets.eservice]\nmax_sessions = 2\n", encoding="utf-8")
    assert load_settings().targets["eservice"].max_sessions == 2
    file.write_text("[targets.eservice]\nmax_sessions = -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"invalid setting targets\.eservice\.max_sessions in .*-prod"):
        load_settings()
    file.write_text("[targets.eservice]\nmax_sessions = 2\nwait_s = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"kansli-prod\.toml is not valid TOML: .*\(at line 3, column 10\)"):
        load_settings()


def test_cli_bad_settings_file_is_one_line_and_exit_4(kansli_env: Path) -> None:
    (kansli_env / "kansli.toml").write_text("[targets.eservice]\nmax_sessions = 'tre'\n", encoding="utf-8")
    result = kansli("runs", cwd=kansli_env)
    assert result.returncode == 4
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "targets.eservice.max_sessions in kansli.toml" in lines[0], lines
