"""Bad config is contained: size, aliases (billion laughs), depth and huge integers are refused
by shape before anything expands, each with its exact `file: key: reason` message, and no
message quotes more of a value than fits a line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from proxy.cli.main import EXIT_CONFIG, main
from proxy.config.guards import MAX_CONFIG_BYTES
from proxy.config.model import ConfigError, load_config


def _laughs(levels: int) -> str:
    """Billion laughs, anchors defined inline where first used, so the whole bomb sits under
    one scalar key whose error message would once repr it (expanding it)."""
    node = '&l1 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'
    for level in range(2, levels + 1):
        node = f"&l{level} [{node}, " + ", ".join([f"*l{level - 1}"] * 8) + "]"
    return node


# Nine levels of nine: 387,420,489 "lol"s if anything expanded it.
BILLION_LAUGHS = f"retry:\n  base_delay: {_laughs(9)}\n"
BOMB_MESSAGE = "retry.base_delay" + "[0]" * 7 + "[1]: YAML aliases are not allowed (*l1)"


def error_of(tmp_path: Path, text: str) -> str:
    path = tmp_path / "proxy.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BILLION_LAUGHS, BOMB_MESSAGE),
        (
            "region: &r us-east-1\nroutes:\n  - {host: h.example, upstream: *r}\n",
            "routes[0].upstream: YAML aliases are not allowed (*r)",
        ),
        (
            "base: &base {rate: 5}\nlimits:\n  - <<: *base\n    name: x\n",
            "limits[0].<<: YAML aliases are not allowed (*base)",
        ),
        (
            "region: " + "[" * 40 + "]" * 40 + "\n",
            "region" + "[0]" * 31 + ": nested deeper than 32 levels",
        ),
        (
            "retry: {quota: " + "1" + "0" * 5000 + "}\n",
            "retry.quota: integer of 5001 digits (at most 32)",
        ),
        (
            "limits:\n  - {name: a, rate: -" + "9" * 40 + "}\n",
            "limits[0].rate: integer of 40 digits (at most 32)",
        ),
        (
            "listen: " + "x" * 10_000 + "\n",
            "listen: expected host:port, got '" + "x" * 60 + "…'",
        ),
        (
            "region: us\nlog_level: " + "y" * 5000 + "\n",
            "log_level: expected one of debug, info, warning, error",
        ),
        (
            "upstream: {connect_timeout: '" + "z" * 5000 + "'}\n",
            "upstream.connect_timeout: expected a duration like 5s or 250ms, got '"
            + "z" * 60
            + "…'",
        ),
    ],
)
def test_each_refusal_names_file_key_and_reason(tmp_path: Path, text: str, message: str) -> None:
    assert error_of(tmp_path, text) == f"{tmp_path / 'proxy.yaml'}: {message}"


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}: larger than 1024 KiB; a config file is refused past that"
    )


def test_the_bomb_is_refused_without_expanding(tmp_path: Path) -> None:
    started = time.process_time()
    assert "YAML aliases are not allowed" in error_of(tmp_path, BILLION_LAUGHS)
    # Expanding it would take minutes and gigabytes; refusing it takes next to nothing.
    assert time.process_time() - started < 1.0


def test_no_message_is_longer_than_a_line(tmp_path: Path) -> None:
    text = "routes:\n  - {host: 'a\\nb" + "q" * 3000 + "', upstream: 'ftp://" + "w" * 3000 + "'}\n"
    message = error_of(tmp_path, text)
    assert "\n" not in message
    assert len(message) < 300


def test_check_config_refuses_a_bomb_with_exit_2_and_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS, encoding="utf-8")
    assert main(["check-config", str(path)]) == EXIT_CONFIG == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{path}: {BOMB_MESSAGE}\n"


def test_anchors_without_aliases_and_ordinary_configs_still_load(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text("region: &r eu-west-1\nretry: {quota: 12345678901234567890}\n")
    config = load_config(path)
    assert (config.region, config.retry.quota) == ("eu-west-1", 12345678901234567890)
