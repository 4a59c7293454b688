"""One moto server (signature checking on) and one proxy process in front of it, per module."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import MotoServer, ProxyProcess, credential_env, moto_server, proxy_process


@dataclass
class MotoStack:
    moto: MotoServer
    proxy: ProxyProcess
    key_id: str
    secret: str


def moto_routes(moto_url: str) -> list[dict[str, str]]:
    """Every AWS host goes to moto; path-prefix routes exercise the third way in."""
    return [
        {"path_prefix": "/via-route/ec2", "upstream": moto_url, "service": "ec2"},
        {"path_prefix": "/via-route/s3", "upstream": moto_url, "service": "s3"},
        {"path_prefix": "/via-route/dynamodb", "upstream": moto_url, "service": "dynamodb"},
        {"path_prefix": "/via-route/sqs", "upstream": moto_url, "service": "sqs"},
        {"path_prefix": "/via-route/sts", "upstream": moto_url, "service": "sts"},
        {"host": "*.amazonaws.com", "upstream": moto_url},
    ]


@pytest.fixture(scope="module")
def moto_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoStack]:
    tmp: Path = tmp_path_factory.mktemp("moto-stack")
    with moto_server() as moto:
        key_id, secret = moto.create_admin_user()
        moto.enable_auth()
        env = credential_env(tmp, {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret})
        config = {
            "region": "us-east-1",
            "log_level": "debug",
            "routes": moto_routes(moto.url),
            "retry": {"max_attempts": 1},
        }
        with proxy_process(tmp, config, env=env) as proxy:
            yield MotoStack(moto, proxy, key_id, secret)
