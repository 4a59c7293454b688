"""Real servers on loopback for integration and e2e tests: moto, the proxy process, the CLI.

Also the environments they run with: no test may pick up the machine's own AWS settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import yaml

from proxy.credentials.base import Credentials

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
EXAMPLE_KEY_ID = "AKIDEXAMPLE"
EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

ACCOUNT = "123456789012"
ADMIN_USER = "proxy-tester"
ADMIN_ARN = f"arn:aws:iam::{ACCOUNT}:user/{ADMIN_USER}"
ROLE_NAME = "app-role"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"


_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now, never the same twice in one test run."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


def wait_for_port(
    port: int,
    timeout: float = 15.0,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            # The child's own last words say why; without them a CI failure is a guess.
            said = log_path.read_text(errors="replace")[-2000:] if log_path else ""
            raise RuntimeError(
                f"process exited with {proc.returncode} before listening on {port}: {said}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class MotoServer:
    """`moto_server`; `enable_auth()` switches SigV4 checking on for every later request."""

    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def enable_auth(self) -> None:
        """From now on every request must carry a valid signature."""
        request = urllib.request.Request(
            f"{self.url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            # Not a form: moto reads the raw body, which Flask empties for form posts.
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            answer.read()

    def setup_iam(self) -> Any:
        """An IAM client with the example keys: only good for setting up, before enable_auth()."""
        import boto3

        return boto3.client(
            "iam",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=EXAMPLE_KEY_ID,
            aws_secret_access_key=EXAMPLE_SECRET,
        )

    def create_admin_user(self, name: str = ADMIN_USER) -> tuple[str, str]:
        """An IAM user allowed everything; returns its (access key id, secret).

        Call before enable_auth(): moto then checks every signature against this key.
        """
        iam = self.setup_iam()
        iam.create_user(UserName=name)
        iam.put_user_policy(
            UserName=name,
            PolicyName="everything",
            PolicyDocument='{"Version":"2012-10-17","Statement":'
            '[{"Effect":"Allow","Action":"*","Resource":"*"}]}',
        )
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=5) as answer:
            answer.read()


@contextlib.contextmanager
def moto_server() -> Iterator[MotoServer]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HTTP"))}
    proc = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for_port(port, 30, proc)
        yield MotoServer(port, proc)
    finally:
        _stop(proc)


def assumed_role_arn(session_name: str) -> str:
    """The ARN moto names as the caller for a session of ROLE_NAME."""
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE_NAME}/{session_name}"


@dataclass(frozen=True)
class MotoAccount:
    """moto with signature checking on, ADMIN_USER's keys and ROLE_NAME to assume."""

    server: MotoServer
    key_id: str
    secret: str

    @property
    def user_credentials(self) -> Credentials:
        return Credentials(self.key_id, self.secret, provider="test")

    def write_base_profile(self, credentials_file: Path) -> None:
        """A shared credentials file whose one profile, [base], holds the admin user's keys."""
        credentials_file.write_text(
            f"[base]\naws_access_key_id = {self.key_id}\naws_secret_access_key = {self.secret}\n"
        )

    def write_role_profile(self, tmp: Path, session_name: str) -> None:
        """tmp/credentials with [base], tmp/config with [profile app]: ROLE_ARN assumed from it."""
        self.write_base_profile(tmp / "credentials")
        (tmp / "config").write_text(
            f"[profile app]\nrole_arn = {ROLE_ARN}\nsource_profile = base\n"
            f"role_session_name = {session_name}\n"
        )


@contextlib.contextmanager
def moto_with_account() -> Iterator[MotoAccount]:
    """A moto server set up with ADMIN_USER and ROLE_NAME, then signature checking switched on."""
    with moto_server() as server:
        key_id, secret = server.create_admin_user(ADMIN_USER)
        iam = server.setup_iam()
        # moto matches trust principals literally (AWS reads `:root` as the whole account), so
        # "*": the admin user and the role's own sessions (profile chains make two hops) may
        # assume it.
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
            ],
        }
        iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(trust))
        allow = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "sts:*", "Resource": "*"}],
        }
        iam.put_role_policy(RoleName=ROLE_NAME, PolicyName="sts", PolicyDocument=json.dumps(allow))
        server.enable_auth()
        yield MotoAccount(server, key_id, secret)


def issue_role_keys(account: MotoAccount, session_name: str) -> dict[str, str]:
    """Role keys moto itself issued (signed AssumeRole with the admin keys): moto accepts them.

    Shaped as STS and the container/IMDS endpoints hand them out (Expiration in UTC, ISO 8601).
    """
    import boto3

    sts = boto3.client(
        "sts",
        endpoint_url=account.server.url,
        region_name="us-east-1",
        aws_access_key_id=account.key_id,
        aws_secret_access_key=account.secret,
    )
    answer = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName=session_name)["Credentials"]
    return {
        "AccessKeyId": answer["AccessKeyId"],
        "SecretAccessKey": answer["SecretAccessKey"],
        "SessionToken": answer["SessionToken"],
        "Expiration": answer["Expiration"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@dataclass
class ProxyProcess:
    """`python -m proxy run` as a real process, with its log captured to a file."""

    config_path: Path
    port: int
    admin_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> int:
        _stop(self.proc)
        return self.proc.returncode


def credential_env(tmp: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment: example keys, no user files, no IMDS lookups."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k not in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy")
    }
    env.update(
        {
            "AWS_ACCESS_KEY_ID": EXAMPLE_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": EXAMPLE_SECRET,
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-credentials"),
            "AWS_CONFIG_FILE": str(tmp / "no-config"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    if extra:
        env.update(extra)
    return env


def chain_env(tmp: Path, **extra: str) -> dict[str, str]:
    """credential_env() with no AWS keys at all: only `extra` can supply credentials."""
    env = credential_env(tmp, extra)
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        if variable not in extra:
            env.pop(variable)
    return env


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Just enough env for an in-process chain: files in `tmp`, IMDS off, nothing inherited."""
    env = {
        "HOME": str(tmp),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "credentials"),
        "AWS_CONFIG_FILE": str(tmp / "config"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.update(extra)
    return env


@contextlib.contextmanager
def proxy_process(
    tmp: Path,
    config: Mapping[str, object],
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    command: tuple[str, ...] = ("-m", "proxy", "run"),
) -> Iterator[ProxyProcess]:
    """Start the proxy with `config` (listen/admin ports filled in) and wait until it listens.

    `command` follows the Python executable; `--config FILE` and `args` come after it."""
    port, admin_port = free_port(), free_port()
    full = {"listen": f"127.0.0.1:{port}", "admin_listen": f"127.0.0.1:{admin_port}", **config}
    config_path = tmp / f"proxy-{port}.yaml"
    config_path.write_text(yaml.safe_dump(full), encoding="utf-8")
    log_path = tmp / f"proxy-{port}.log"
    run_env = dict(env) if env is not None else credential_env(tmp)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, *command, "--config", str(config_path), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=run_env,
        )
        handle = ProxyProcess(config_path, port, admin_port, proc, log_path, run_env)
        try:
            wait_for_port(port, 20, proc, log_path)
            wait_for_port(admin_port, 5, proc, log_path)
            yield handle
        finally:
            _stop(proc)


async def run_cli(env: Mapping[str, str], *args: str) -> tuple[int, str, str]:
    """`throttle-proxy ARGS` in a child process: (exit code, stdout, stderr).

    Async, so that fakes served on the test's event loop keep answering the child.
    """
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        *args,
        cwd=REPO,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(child.communicate(), 30)
    except TimeoutError:
        child.kill()
        await child.wait()
        raise
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


@dataclass
class RedisProcess:
    """A throwaway redis-server on loopback: no persistence, killed at the end."""

    port: int
    process: subprocess.Popen[bytes] | None = None
    extra_args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, 5, self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None
