"""`credential_process` with a real tiny Python program: output, exit codes, timeout."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from proxy.credentials.process import ProcessProvider, run_credential_process
from proxy.credentials.profiles import ProfilePaths, ProfileStore
from proxy.errors import CredentialError

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def program(tmp_path: Path, body: str) -> str:
    """A script file and the command line that runs it (quoted like a shell would)."""
    script = tmp_path / "creds.py"
    script.write_text(body)
    return f"'{sys.executable}' '{script}'"


async def test_version_1_output_with_expiration(tmp_path: Path) -> None:
    document = {
        "Version": 1,
        "AccessKeyId": "ASIAPROCESS",
        "SecretAccessKey": SECRET,
        "SessionToken": "process-token",
        "Expiration": "2030-01-01T00:00:00Z",
    }
    command = program(tmp_path, f"import json, sys\nprint(json.dumps({document!r}))\n")
    credentials = await run_credential_process(command, 10)
    assert credentials.access_key_id == "ASIAPROCESS"
    assert credentials.session_token == "process-token"
    assert credentials.expiry == 1893456000.0
    assert credentials.provider == "credential-process"


async def test_runs_without_a_shell(tmp_path: Path) -> None:
    # With a shell, `;` would run a second command; exec passes it as an argument instead.
    marker = tmp_path / "marker"
    command = program(
        tmp_path,
        "import json, sys\n"
        "print(json.dumps({'Version': 1, 'AccessKeyId': sys.argv[1], 'SecretAccessKey': 's'}))\n",
    )
    credentials = await run_credential_process(f"{command} 'a;touch {marker}'", 10)
    assert credentials.access_key_id == f"a;touch {marker}"
    assert not marker.exists()


async def test_exit_code_and_first_stderr_line(tmp_path: Path) -> None:
    command = program(
        tmp_path, "import sys\nsys.stderr.write('token expired\\nmore\\n')\nsys.exit(3)\n"
    )
    with pytest.raises(CredentialError) as caught:
        await run_credential_process(command, 10)
    assert (
        str(caught.value)
        == f"credential-process: credential_process {command!r}: exited 3: token expired"
    )


async def test_timeout_kills_the_program(tmp_path: Path) -> None:
    command = program(tmp_path, "import time\ntime.sleep(30)\n")
    with pytest.raises(CredentialError, match=r"timed out after 0.3s"):
        await run_credential_process(command, 0.3)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"Version": 2, "AccessKeyId": "A", "SecretAccessKey": "s"}, "unsupported Version 2"),
        ({"Version": 1, "AccessKeyId": "A"}, "output has no SecretAccessKey"),
        (
            {"Version": 1, "AccessKeyId": "A", "SecretAccessKey": "s", "Expiration": "x"},
            "Expiration: not an ISO-8601 timestamp",
        ),
    ],
)
async def test_bad_output(tmp_path: Path, document: dict[str, object], reason: str) -> None:
    command = program(tmp_path, f"import json\nprint(json.dumps({document!r}))\n")
    with pytest.raises(CredentialError, match=reason):
        await run_credential_process(command, 10)


async def test_missing_program_names_the_command() -> None:
    with pytest.raises(CredentialError, match="cannot start"):
        await run_credential_process("/nonexistent/tool --flag", 10)


async def test_provider_reads_the_profile(tmp_path: Path) -> None:
    command = program(
        tmp_path,
        "import json\nprint(json.dumps({'Version': 1, 'AccessKeyId': 'AKIDPROC', "
        "'SecretAccessKey': 's'}))\n",
    )
    config = tmp_path / "config"
    config.write_text(f"[profile tool]\ncredential_process = {command}\n")
    store = ProfileStore(ProfilePaths(tmp_path / "credentials", config))
    assert await ProcessProvider(store, "default", 10).load() is None
    loaded = await ProcessProvider(store, "tool", 10).load()
    assert loaded is not None
    assert loaded.access_key_id == "AKIDPROC"


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_cancelled_run_kills_and_reaps_the_program(tmp_path: Path) -> None:
    # The refresher is cancelled at shutdown while the program still runs: it must not linger.
    pid_file = tmp_path / "pid"
    command = program(
        tmp_path,
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(30)\n",
    )
    running = asyncio.create_task(run_credential_process(command, 60))
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text():
            break
        await asyncio.sleep(0.01)
    pid = int(pid_file.read_text())
    assert _is_running(pid)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert not _is_running(pid)  # killed and reaped (a zombie would still answer kill 0)


async def test_output_past_the_cap_stops_reading_and_kills_the_program(tmp_path: Path) -> None:
    # 1 MiB then a long sleep: the runner must give up at 64 KiB, not buffer and wait it out.
    pid_file = tmp_path / "pid"
    command = program(
        tmp_path,
        "import os, sys, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "for _ in range(16):\n"
        "    sys.stdout.write('x' * 65536)\n"
        "sys.stdout.flush()\n"
        "time.sleep(30)\n",
    )
    started = time.monotonic()
    with pytest.raises(CredentialError) as caught:
        await run_credential_process(command, 10)
    assert time.monotonic() - started < 5
    assert str(caught.value) == (
        f"credential-process: credential_process {command!r}: output is larger than 64 KiB"
    )
    assert not _is_running(int(pid_file.read_text()))


async def test_output_of_exactly_the_cap_is_read_whole(tmp_path: Path) -> None:
    body = '{"Version": 1, "AccessKeyId": "AKIDCAP", "SecretAccessKey": "s"}'
    padded = body + " " * (64 * 1024 - len(body))
    command = program(tmp_path, f"import sys\nsys.stdout.write({padded!r})\n")
    assert (await run_credential_process(command, 10)).access_key_id == "AKIDCAP"
    with pytest.raises(CredentialError, match="output is larger than 64 KiB"):
        await run_credential_process(
            program(tmp_path, f"import sys\nsys.stdout.write({padded + ' '!r})\n"), 10
        )


async def test_noisy_stderr_does_not_block_the_program(tmp_path: Path) -> None:
    # 1 MiB on stderr before the answer: stderr is drained (only its head kept), no deadlock.
    command = program(
        tmp_path,
        "import json, sys\n"
        "sys.stderr.write('warning\\n' * 131072)\n"
        "print(json.dumps({'Version': 1, 'AccessKeyId': 'AKIDNOISY', 'SecretAccessKey': 's'}))\n",
    )
    assert (await run_credential_process(command, 10)).access_key_id == "AKIDNOISY"
