"""Process plumbing shared by the benchmarks: free ports, child processes, the proxy itself.

Every child is started in its own session and stopped by its own pid (TERM, then KILL after a
grace period), so a benchmark that fails half-way still leaves nothing running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

REPO = Path(__file__).resolve().parents[1]
# The repository's own venv; from a git worktree without one, the interpreter running this.
_VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PYTHON = _VENV_PYTHON if _VENV_PYTHON.exists() else Path(sys.executable)
ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
_START_TIMEOUT = 15.0
_STOP_GRACE = 5.0


def free_port() -> int:
    """A loopback port nobody is listening on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Block until something accepts on 127.0.0.1:`port`; fail early if `process` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} at start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout:.0f}s")


def pinned(command: Sequence[str], cpu: int | None) -> list[str]:
    """`command` run under `taskset -c cpu` when a cpu is given."""
    return ["taskset", "-c", str(cpu), *command] if cpu is not None else list(command)


class ChildProcess:
    """A child started in its own session and stopped by pid when the `with` block ends."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        ready_port: int | None = None,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        start_timeout: float = _START_TIMEOUT,
        cwd: Path | None = None,
    ) -> None:
        self.command = list(command)
        # `python -m` puts the working directory first on sys.path, before PYTHONPATH: a child
        # meant to run another checkout's code must not start in this one.
        self._cwd = cwd
        self._start_timeout = start_timeout
        self._ready_port = ready_port
        self._env = dict(env) if env is not None else None
        self._log_path = log_path
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def start(self) -> ChildProcess:
        # Children write to a file, never a pipe nobody reads (a full pipe would stall them).
        self._log = open(self._log_path, "ab") if self._log_path else None  # noqa: SIM115
        sink: IO[bytes] | int = self._log if self._log is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command,
            env=self._env,
            stdout=sink,
            stderr=sink,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self._cwd,
        )
        if self._ready_port is not None:
            try:
                wait_for_port(self._ready_port, self.process, self._start_timeout)
            except RuntimeError as error:
                self.stop()
                raise RuntimeError(f"{error}\n{self.log_tail()}") from None
            except BaseException:
                self.stop()
                raise
        return self

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the child wrote, for error messages."""
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        text = self._log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """TERM, wait, then KILL: by this child's pid only."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=_STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=_STOP_GRACE)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ChildProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def proxy_env(workdir: Path) -> dict[str, str]:
    """Credentials from the environment only (AWS's documented example keys), no IMDS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_SHARED_CREDENTIALS_FILE=str(workdir / "no-such-credentials"),
        AWS_CONFIG_FILE=str(workdir / "no-such-config"),
        PYTHONPATH=str(REPO),
    )
    return env


@dataclass(frozen=True)
class ProxySettings:
    """The few config values the benchmarks vary."""

    route_host: str
    upstream_port: int
    log_level: str = "warning"
    max_buffered_body: str = "8MiB"
    # A rule matching every request of the service that never binds: the limiter's path paid.
    limit_every_request: str | None = None
    # connections.max_connections, for benchmarks that hold more than the default 4096.
    max_connections: int | None = None


def write_proxy_config(workdir: Path, settings: ProxySettings, name: str) -> tuple[Path, int]:
    """A config file routing `route_host` to the loopback upstream; returns (path, port)."""
    port, admin = free_port(), free_port()
    text = (
        f"listen: 127.0.0.1:{port}\n"
        f"admin_listen: 127.0.0.1:{admin}\n"
        "region: us-east-1\n"
        f"log_level: {settings.log_level}\n"
        "routes:\n"
        f'  - host: "{settings.route_host}"\n'
        f'    upstream: "http://127.0.0.1:{settings.upstream_port}"\n'
        f"{_limits(settings)}"
        "include_default_limits: false\n"
        f"max_buffered_body: {settings.max_buffered_body}\n"
    )
    if settings.max_connections is not None:
        text += f"connections: {{max_connections: {settings.max_connections}}}\n"
    path = workdir / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path, port


def _limits(settings: ProxySettings) -> str:
    if settings.limit_every_request is None:
        return "limits: []\n"
    return (
        "limits:\n"
        "  - name: every-request\n"
        f"    service: {settings.limit_every_request}\n"
        "    rate: 1000000\n"
        "    burst: 1000000\n"
    )


# Installs uvloop's event loop policy, then runs the unchanged CLI.
_UVLOOP_LAUNCHER = """
import sys, uvloop
uvloop.install()
from proxy.cli.main import main
sys.exit(main())
"""


def proxy_command(config: Path, *, use_uvloop: bool = False) -> list[str]:
    """`python -m proxy run --config FILE`, or the same CLI under uvloop."""
    if use_uvloop:
        return [str(PYTHON), "-c", _UVLOOP_LAUNCHER, "run", "--config", str(config)]
    return [str(PYTHON), "-m", "proxy", "run", "--config", str(config)]


def uvloop_available() -> bool:
    """True when uvloop imports in the benchmark's interpreter."""
    probe = subprocess.run(
        [str(PYTHON), "-c", "import uvloop"], capture_output=True, check=False, timeout=30
    )
    return probe.returncode == 0


def _own_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # Fields after the parenthesised command: utime and stime are the 12th and 13th.
        fields = stat.read().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text(encoding="ascii")
        except OSError:
            continue
        if int(text.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of `pid` and its direct children (nginx's master and worker)."""
    total = 0.0
    for member in (pid, *_children(pid)):
        try:
            total += _own_cpu_seconds(member)
        except OSError:
            continue
    return total
