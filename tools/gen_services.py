"""Generate proxy/aws/data/services.json from the installed botocore's service models.

Run from the repository root after upgrading botocore:

    .venv/bin/python tools/gen_services.py

The output holds only what host resolution and operation classification need:

- ``partitions``: DNS suffixes (longest first) and the regular expression of region names;
- ``prefixes``: endpoint prefix -> [signing name, wire protocols, JSON target prefixes];
- ``hosts``: hostnames whose signing service or region cannot be read off the name itself
  (global endpoints such as ``sts.amazonaws.com`` or ``iam.us-gov.amazonaws.com``);
- ``operations``: signing name -> operation names joined by spaces (bounds metric labels).

botocore is read as reference data only; nothing of its code is used at run time.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path
from typing import Any

import botocore

OUTPUT = Path(__file__).resolve().parent.parent / "proxy" / "data" / "services.json"

# Endpoint prefixes that no service model names but that clients address directly.
EXTRA_PREFIXES: dict[str, str] = {
    "execute-api": "execute-api",  # API Gateway invoke URLs: {api-id}.execute-api.{region}
    "s3-accesspoint": "s3",  # {name}-{account}.s3-accesspoint.{region}
    "s3-object-lambda": "s3-object-lambda",
    "queue": "sqs",  # legacy SQS hosts: {region}.queue.amazonaws.com
}
# Wire protocols a prefix accepts besides those in its models: SQS took the query protocol
# for years and still does; old SDKs keep sending it.
EXTRA_PROTOCOLS: dict[str, tuple[str, ...]] = {
    "sqs": ("query",),
    "queue": ("query",),
    "s3-accesspoint": ("rest-xml",),
    "s3-object-lambda": ("rest-xml",),
}


def _load_json(path: Path) -> Any:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return json.load(fh)
    return json.loads(path.read_text(encoding="utf-8"))


def _latest_service_models(data_dir: Path) -> list[dict[str, Any]]:
    """The newest service-2.json of every service directory."""
    models = []
    for service_dir in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        for version_dir in sorted(service_dir.iterdir(), reverse=True):
            candidates = sorted(version_dir.glob("service-2.json*"))
            if candidates:
                models.append(_load_json(candidates[0]))
                break
    return models


def _prefix_table(
    models: list[dict[str, Any]], endpoints: dict[str, Any]
) -> tuple[dict[str, list[Any]], dict[str, set[str]]]:
    signing: dict[str, str] = {}
    protocols: dict[str, set[str]] = {}
    targets: dict[str, set[str]] = {}
    operations: dict[str, set[str]] = {}
    for model in models:
        meta = model["metadata"]
        prefix = meta["endpointPrefix"]
        name = meta.get("signingName") or prefix
        if signing.setdefault(prefix, name) != name:
            print(f"warning: prefix {prefix}: signing {signing[prefix]} vs {name}", file=sys.stderr)
        protocols.setdefault(prefix, set()).update(meta.get("protocols") or [meta["protocol"]])
        if meta.get("targetPrefix"):
            targets.setdefault(prefix, set()).add(meta["targetPrefix"])
        operations.setdefault(name, set()).update(model["operations"])
    # endpoints.json knows prefixes the models spell differently (data.iot -> iotdata).
    for partition in endpoints["partitions"]:
        for prefix, service in partition["services"].items():
            scope = service.get("defaults", {}).get("credentialScope", {})
            if "service" in scope:
                signing[prefix] = scope["service"]
            else:
                signing.setdefault(prefix, prefix)
    for prefix, name in EXTRA_PREFIXES.items():
        signing.setdefault(prefix, name)
    for prefix, extra in EXTRA_PROTOCOLS.items():
        protocols.setdefault(prefix, set()).update(extra)
    table = {
        prefix: [name, sorted(protocols.get(prefix, ())), sorted(targets.get(prefix, ()))]
        for prefix, name in sorted(signing.items())
    }
    return table, operations


def _region_regex(endpoints: dict[str, Any]) -> str:
    parts = [p["regionRegex"].strip("^$") for p in endpoints["partitions"]]
    return "^(?:" + "|".join(parts) + ")$"


def _suffixes(endpoints: dict[str, Any]) -> list[str]:
    found: set[str] = set()
    for partition in endpoints["partitions"]:
        found.add(partition["dnsSuffix"])
        for variant in partition["defaults"].get("variants", []):
            found.add(variant["dnsSuffix"])
    return sorted(found, key=lambda s: (-len(s), s))


def _spelled_scope(
    host: str, suffixes: list[str], region_re: re.Pattern[str]
) -> tuple[str, str] | None:
    """(endpoint prefix, region) as a host spells them: 'runtime-fips.sagemaker.us-east-1...'."""
    suffix = next((s for s in suffixes if host.endswith("." + s)), None)
    if suffix is None:
        return None
    labels = host[: -len(suffix) - 1].split(".")
    regions = [i for i, label in enumerate(labels) if region_re.match(label)]
    if not regions:
        return None
    kept = [
        x.removesuffix("-fips") for x in labels[: regions[-1]] if x not in ("dualstack", "fips")
    ]
    return ".".join(kept), labels[regions[-1]]


def _irregular_hosts(
    endpoints: dict[str, Any],
    prefixes: dict[str, list[Any]],
    suffixes: list[str],
    region_re: re.Pattern[str],
) -> dict[str, list[str]]:
    """Explicit hostnames whose signing scope is not what the name itself spells."""
    hosts: dict[str, list[str]] = {}
    for partition in endpoints["partitions"]:
        for prefix, service in partition["services"].items():
            default_scope = service.get("defaults", {}).get("credentialScope", {})
            for key, endpoint in service["endpoints"].items():
                scope = {**default_scope, **endpoint.get("credentialScope", {})}
                region = scope.get("region", key)
                if not region_re.match(region):
                    continue
                names = [endpoint.get("hostname")]
                names += [v.get("hostname") for v in endpoint.get("variants", [])]
                for host in filter(None, names):
                    if "{" in host or ":" in host:
                        continue
                    spelled = _spelled_scope(host, suffixes, region_re)
                    spelled_prefix = spelled[0] if spelled else None
                    # A host spelling another known prefix (rds.* under docdb) signs as that.
                    owner = spelled_prefix if spelled_prefix in prefixes else prefix
                    signing_name = scope.get("service", prefixes[owner][0])
                    if spelled == (owner, region) and prefixes[owner][0] == signing_name:
                        continue
                    entry = [signing_name, region, owner]
                    if hosts.setdefault(host, entry) != entry:
                        print(f"warning: {host}: {hosts[host]} vs {entry}", file=sys.stderr)
    return dict(sorted(hosts.items()))


def build() -> dict[str, Any]:
    """Collect the facts from botocore's data directory."""
    data_dir = Path(botocore.__file__).parent / "data"
    endpoints = _load_json(data_dir / "endpoints.json")
    models = _latest_service_models(data_dir)
    prefixes, operations = _prefix_table(models, endpoints)
    region_regex = _region_regex(endpoints)
    suffixes = _suffixes(endpoints)
    return {
        "botocore_version": botocore.__version__,
        "region_regex": region_regex,
        "suffixes": suffixes,
        "prefixes": prefixes,
        "hosts": _irregular_hosts(endpoints, prefixes, suffixes, re.compile(region_regex)),
        "operations": {name: " ".join(sorted(ops)) for name, ops in sorted(operations.items())},
    }


def main() -> None:
    """Write services.json compactly and print its size."""
    text = json.dumps(build(), separators=(",", ":"), sort_keys=False)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(text)} bytes)")


if __name__ == "__main__":
    main()
