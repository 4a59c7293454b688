"""S3's flexible checksums, computed independently of any SDK (base64 of the big-endian digest).

CRC32C and CRC64NVME are plain table-driven CRCs here (no awscrt on the test machine): slow
(a few MB/s), fine for the small bodies tests use them on.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable
from functools import cache


@cache
def _table(poly: int, width: int) -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc & ((1 << width) - 1))
    return tuple(table)


def _reflected_crc(data: bytes, poly: int, width: int) -> int:
    table = _table(poly, width)
    mask = (1 << width) - 1
    crc = mask
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ mask


def crc32c(data: bytes) -> int:
    return _reflected_crc(data, 0x82F63B78, 32)


def crc64nvme(data: bytes) -> int:
    return _reflected_crc(data, 0x9A6C9329AC4BC9B5, 64)


def _b64(value: int, size: int) -> str:
    return base64.b64encode(value.to_bytes(size, "big")).decode()


ALGORITHMS: dict[str, Callable[[bytes], str]] = {
    "crc32": lambda data: _b64(zlib.crc32(data), 4),
    "crc32c": lambda data: _b64(crc32c(data), 4),
    "crc64nvme": lambda data: _b64(crc64nvme(data), 8),
    "sha1": lambda data: base64.b64encode(hashlib.sha1(data).digest()).decode(),
    "sha256": lambda data: base64.b64encode(hashlib.sha256(data).digest()).decode(),
}


def checksum(algorithm: str, data: bytes) -> str:
    """The value of `x-amz-checksum-<algorithm>` for `data`."""
    return ALGORITHMS[algorithm](data)
