"""`throttle-proxy check-config` and `--version`: exit codes, what goes to stdout and stderr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy import __version__
from proxy.cli.main import EXIT_CONFIG, main


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proxy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def check_ok(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Run check-config expecting success; the printed YAML report."""
    assert main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    first, _, rest = out.partition("\n")
    assert first == f"{path}: ok"
    report: dict[str, Any] = yaml.safe_load(rest)
    return report


def check_fails(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run check-config expecting a config error; what it printed on stderr."""
    assert main(["check-config", str(path)]) == EXIT_CONFIG == 2
    out, err = capsys.readouterr()
    assert out == ""
    return err


def test_check_config_prints_ok_and_the_effective_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        """
listen: 0.0.0.0:18080
region: eu-west-1
routes:
  - {path_prefix: /s3, upstream: 'http://127.0.0.1:9000', service: s3}
limits:
  - {name: sqs-send, service: sqs, operations: [SendMessage], rate: 3}
redis: {url: 'redis://user:hunter2@cache:6379/0'}
retry: {max_attempts: 2}
""",
    )
    report = check_ok(path, capsys)
    assert report["listen"] == "0.0.0.0:18080"
    assert report["admin_listen"] == "127.0.0.1:9090"
    assert report["region"] == "eu-west-1"
    assert report["routes"] == [
        {"upstream": "http://127.0.0.1:9000", "path_prefix": "/s3", "service": "s3"}
    ]
    assert report["redis"] == "redis://user:****@cache:6379/0"
    assert report["retry"] == {"max_attempts": 2, "quota": 500}
    assert [rule["name"] for rule in report["limits"]] == ["sqs-send"]
    rule = report["limits"][0]
    assert (rule["service"], rule["rate"], rule["burst"]) == ("sqs", 3.0, 3.0)
    assert rule["operations"] == ["SendMessage"]


def test_check_config_never_prints_the_redis_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "redis: {url: 'rediss://:s3cr3t-pw@cache:6380'}\n")
    assert main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "s3cr3t-pw" not in out + err


def test_default_limits_appear_when_included(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "include_default_limits: true\nlimits:\n  - {name: mine, service: sqs, rate: 3}\n",
    )
    names = [rule["name"] for rule in check_ok(path, capsys)["limits"]]
    assert "mine" in names
    for default in (
        "aws-ec2-non-mutating",
        "aws-ec2-mutating",
        "aws-ec2-run-instances",
        "aws-s3-writes-per-prefix",
        "aws-s3-reads-per-prefix",
    ):
        assert default in names


def test_default_limits_absent_unless_included(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "region: us-west-2\n")
    assert check_ok(path, capsys)["limits"] == []


def test_a_config_rule_replaces_the_default_of_the_same_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "include_default_limits: true\n"
        "limits:\n  - {name: aws-ec2-run-instances, service: ec2, rate: 1, burst: 2}\n",
    )
    rules = [r for r in check_ok(path, capsys)["limits"] if r["name"] == "aws-ec2-run-instances"]
    assert len(rules) == 1
    assert (rules[0]["rate"], rules[0]["burst"]) == (1.0, 2.0)


def test_bad_file_exits_2_with_the_exact_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "limits:\n  - {name: a, service: ec2, rate: fast}\n")
    assert check_fails(path, capsys) == f"{path}: limits[0].rate: expected a number, got str\n"


def test_invalid_yaml_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "listen: [1, 2\n")
    assert check_fails(path, capsys) == (
        f"{path}: not valid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'\n"
    )


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.yaml"
    assert check_fails(path, capsys) == f"{path}: cannot read: No such file or directory\n"


def test_route_whose_service_cannot_be_inferred_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "routes:\n  - {path_prefix: /x, upstream: 'http://127.0.0.1:9000'}\n")
    assert check_fails(path, capsys) == (
        f"{path}: routes[0].service: cannot be inferred from upstream host '127.0.0.1': set it\n"
    )


def test_route_service_inferred_from_an_aws_upstream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "routes:\n  - {path_prefix: /q, upstream: 'https://sqs.eu-west-1.amazonaws.com'}\n",
    )
    report = check_ok(path, capsys)
    assert report["routes"] == [
        {"upstream": "https://sqs.eu-west-1.amazonaws.com", "path_prefix": "/q"}
    ]


@pytest.mark.parametrize(
    "content",
    [
        b"routes:\n  - {host: a.example, upstream: 'http://127.0.0.1:99999', service: s3}\n",
        "region: caf\xe9\n".encode("latin-1"),
    ],
    ids=["bad-port", "latin-1"],
)
def test_every_bad_file_exits_2_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_bytes(content)
    assert check_fails(path, capsys).startswith(f"{path}: ")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out == f"throttle-proxy {__version__}\n"
    assert __version__ == "0.1.0"


@pytest.mark.parametrize("argv", [[], ["check-config"], ["no-such-command"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "usage: throttle-proxy" in capsys.readouterr().err


def test_a_spool_dir_that_is_missing_or_not_a_directory_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-dir"
    path = write(tmp_path, f"spool_dir: {missing}\n")
    assert check_fails(path, capsys) == f"{path}: spool_dir: {str(missing)!r} is not a directory\n"
    a_file = tmp_path / "a-file"
    a_file.write_text("x", encoding="utf-8")
    path = write(tmp_path, f"spool_dir: {a_file}\n")
    assert check_fails(path, capsys) == f"{path}: spool_dir: {str(a_file)!r} is not a directory\n"
    path = write(tmp_path, f"spool_dir: {tmp_path}\n")
    assert check_ok(path, capsys)
