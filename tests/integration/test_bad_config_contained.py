"""Bad config is contained, through real proxy processes: a SIGHUP reload of a YAML bomb (and of
a file past the size limit) while requests flow leaves the proxy serving, small and quick, and
`run` that cannot bind prints one line naming the address and exits 2."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import yaml

from proxy.config.guards import MAX_CONFIG_BYTES
from tests.fakes.aws_upstream import FakeAws
from tests.polling import eventually
from tests.servers import REPO, credential_env, free_port, proxy_process
from tests.unit.test_config_guards import BILLION_LAUGHS, BOMB_MESSAGE

EC2 = "ec2.us-east-1.amazonaws.com"
DESCRIBE = "/?Action=DescribeInstances&Version=2016-11-15"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_reloads_of_a_bomb_and_an_oversized_file_leave_requests_flowing(
    tmp_path: Path, fake_aws: FakeAws
) -> None:
    config = {"routes": [{"host": EC2, "upstream": fake_aws.url}]}
    with proxy_process(tmp_path, config) as proxy:
        good = proxy.config_path.read_text()
        rss_before = rss_mib(proxy.proc.pid)
        latencies: list[float] = []
        statuses: list[int] = []
        stop = asyncio.Event()

        def reload_failures() -> int:
            return proxy.log_text().count('"event": "reload-failed"')

        async def traffic(session: aiohttp.ClientSession) -> None:
            while not stop.is_set():
                started = time.monotonic()
                async with session.get(proxy.url + DESCRIBE, headers={"Host": EC2}) as answer:
                    await answer.read()
                statuses.append(answer.status)
                latencies.append(time.monotonic() - started)

        async with aiohttp.ClientSession() as session:
            clients = [asyncio.create_task(traffic(session)) for _ in range(4)]
            try:
                assert await eventually(lambda: len(statuses) >= 20, 10)
                for bad in (
                    good + BILLION_LAUGHS,
                    good + "# padding\n" * (MAX_CONFIG_BYTES // 10 + 1),
                ):
                    failures = reload_failures()
                    proxy.config_path.write_text(bad)
                    proxy.signal(signal.SIGHUP)
                    assert await eventually(lambda: reload_failures() > failures, 10)  # noqa: B023
                served = len(statuses)
                assert await eventually(lambda: len(statuses) >= served + 20, 10)
            finally:
                stop.set()
                await asyncio.gather(*clients)
        assert set(statuses) == {200}
        # Expanding the bomb would freeze the loop for seconds and take RSS past a gigabyte.
        assert max(latencies) < 2.0, max(latencies)
        assert rss_mib(proxy.proc.pid) - rss_before < 50
        log = proxy.log_text()
        assert BOMB_MESSAGE in log
        assert "larger than 1024 KiB" in log
        assert "Traceback" not in log
        # The proxy still takes a good config after the bad ones.
        proxy.config_path.write_text(good)
        proxy.signal(signal.SIGHUP)
        assert await eventually(lambda: '"event": "reloaded"' in proxy.log_text(), 10)


async def run_proxy(tmp_path: Path, config: dict[str, object]) -> tuple[int, str, str]:
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        "run",
        "--config",
        str(path),
        cwd=REPO,
        env=credential_env(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), 20)
    assert child.returncode is not None
    text = out.decode() + err.decode()
    assert "Traceback" not in text
    # Besides the JSON log lines (to stderr), exactly one line: the error.
    plain = [line for line in err.decode().splitlines() if not line.startswith("{")]
    return child.returncode, text, "\n".join(plain)


async def test_run_with_its_port_in_use_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = await run_proxy(
            tmp_path, {"listen": f"127.0.0.1:{port}", "admin_listen": f"127.0.0.1:{free_port()}"}
        )
    assert code == 2
    assert (
        err == f"throttle-proxy: cannot listen on 127.0.0.1:{port} (listen): address already in use"
    )


async def test_run_with_its_admin_port_in_use_names_admin_listen(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = await run_proxy(
            tmp_path, {"listen": f"127.0.0.1:{free_port()}", "admin_listen": f"127.0.0.1:{port}"}
        )
    assert code == 2
    assert err == (
        f"throttle-proxy: cannot listen on 127.0.0.1:{port} (admin_listen): address already in use"
    )


async def test_run_on_an_address_this_host_does_not_have_exits_2(tmp_path: Path) -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never assigned to a host.
    code, _, err = await run_proxy(
        tmp_path, {"listen": "192.0.2.1:8080", "admin_listen": f"127.0.0.1:{free_port()}"}
    )
    assert code == 2
    assert err == (
        "throttle-proxy: cannot listen on 192.0.2.1:8080 (listen): cannot assign requested address"
    )
