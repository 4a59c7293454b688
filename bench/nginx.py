"""Generated nginx configs for the throughput benchmark: a fast upstream and a `proxy_pass` hop.

Two nginx instances, not two server blocks in one: each runs one worker, and the upstream and
the hop must sit on different cores (the hop shares a core with the proxy it is compared to).
"""

from __future__ import annotations

from pathlib import Path

from bench.harness import ChildProcess, pinned

NGINX = "/usr/sbin/nginx"
# A small DescribeInstances-shaped answer, about the size of an empty real one.
UPSTREAM_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
    "<requestId>8f7724cf-496f-496e-8fe3-example</requestId><reservationSet/>"
    "</DescribeInstancesResponse>"
)


def _common(workdir: Path, name: str, cpu: int) -> str:
    # worker_cpu_affinity takes a bit mask written right to left: cpu 1 is "10".
    mask = "1" + "0" * cpu
    temp = workdir / f"{name}-temp"
    temp.mkdir(exist_ok=True)
    temp.chmod(0o777)  # workers may run as nobody when nginx starts as root
    return (
        "daemon off;\n"
        "master_process on;\n"
        "worker_processes 1;\n"
        f"worker_cpu_affinity {mask};\n"
        f"pid {workdir / name}.pid;\n"
        f"error_log {workdir / name}-error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "  access_log off;\n"
        "  keepalive_requests 10000000;\n"
        "  keepalive_timeout 120s;\n"
        f"  client_body_temp_path {temp}/body;\n"
        f"  proxy_temp_path {temp}/proxy;\n"
        f"  fastcgi_temp_path {temp}/fastcgi;\n"
        f"  uwsgi_temp_path {temp}/uwsgi;\n"
        f"  scgi_temp_path {temp}/scgi;\n"
    )


def upstream_config(workdir: Path, port: int, cpu: int) -> Path:
    """An nginx answering every request with UPSTREAM_BODY (200, text/xml)."""
    body = UPSTREAM_BODY.replace("'", "\\'")
    text = _common(workdir, "upstream", cpu) + (
        "  server {\n"
        f"    listen 127.0.0.1:{port} backlog=4096;\n"
        "    location / {\n"
        "      default_type text/xml;\n"
        "      add_header x-amzn-RequestId 8f7724cf-496f-496e-8fe3-example;\n"
        f"      return 200 '{body}';\n"
        "    }\n"
        "  }\n"
        "}\n"
    )
    path = workdir / "upstream.conf"
    path.write_text(text, encoding="utf-8")
    return path


def hop_config(workdir: Path, port: int, upstream_port: int, cpu: int) -> Path:
    """An nginx `proxy_pass` hop to the upstream over pooled keep-alive connections."""
    text = _common(workdir, "hop", cpu) + (
        "  upstream aws_fake {\n"
        f"    server 127.0.0.1:{upstream_port};\n"
        "    keepalive 64;\n"
        "    keepalive_requests 10000000;\n"
        "  }\n"
        "  server {\n"
        f"    listen 127.0.0.1:{port} backlog=4096;\n"
        "    location / {\n"
        "      proxy_pass http://aws_fake;\n"
        "      proxy_http_version 1.1;\n"
        '      proxy_set_header Connection "";\n'
        "      proxy_set_header Host $host;\n"
        "    }\n"
        "  }\n"
        "}\n"
    )
    path = workdir / "hop.conf"
    path.write_text(text, encoding="utf-8")
    return path


def nginx_process(config: Path, port: int, cpu: int) -> ChildProcess:
    """nginx in the foreground on `config`, its master pinned to `cpu` like its worker."""
    command = pinned([NGINX, "-p", str(config.parent), "-c", str(config)], cpu)
    return ChildProcess(command, ready_port=port, log_path=config.with_suffix(".log"))
