"""A small kustomize renderer for the tests: the subset deploy/kubernetes/ uses, and no more.

No kustomize binary comes from the package registries we use, so the manifest tests render
the overlays here and, where `kubectl` happens to be installed, compare with
`kubectl kustomize`. Anything this subset does not understand is an error rather than a
silent difference: an unknown kustomization key, a patch that matches nothing, a resource
defined twice.

Supported: `resources` (files and directories), `configMapGenerator` (`name` + `files`; no
hash suffix is added, callers compare names without it), `patches` (`path`, optional
`target`) holding either a strategic merge patch (a mapping) or a JSON 6902 patch (a list).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

_KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "configMapGenerator", "patches"}
_TARGET_KEYS = {"group", "version", "kind", "name"}
# Strategic-merge keys of the lists our patches may touch (from the Kubernetes API types).
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}


class KustomizeError(Exception):
    """The kustomization uses something this renderer does not support, or is wrong."""


def render(directory: Path) -> list[Manifest]:
    """Render the kustomization in `directory` into a list of manifests."""
    kustomization = _load_kustomization(directory)
    manifests: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        manifests.extend(render(path) if path.is_dir() else load_documents(path))
    for generator in kustomization.get("configMapGenerator", []):
        manifests.append(_config_map(directory, generator))
    _reject_duplicates(manifests)
    for patch in kustomization.get("patches", []):
        _apply_patch(directory, patch, manifests)
    return manifests


def load_documents(path: Path) -> list[Manifest]:
    """Every non-empty YAML document in a file."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def identity(manifest: Mapping[str, Any]) -> tuple[str, str]:
    """(kind, name): unique within one rendering."""
    return manifest["kind"], manifest["metadata"]["name"]


def strategic_merge(base: Manifest, patch: Mapping[str, Any]) -> None:
    """Merge `patch` into `base` in place: maps recurse, null deletes, keyed lists merge."""
    for key, value in patch.items():
        current = base.get(key)
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(current, dict):
            strategic_merge(current, value)
        elif isinstance(value, list) and isinstance(current, list) and key in _MERGE_KEYS:
            _merge_keyed_list(current, value, _MERGE_KEYS[key])
        else:
            base[key] = copy.deepcopy(value)


def json6902(document: Manifest, operations: list[Mapping[str, Any]]) -> None:
    """Apply JSON patch operations `add`, `remove` and `replace` in place."""
    for operation in operations:
        op = operation.get("op")
        *parents, last = _pointer(str(operation.get("path", "")))
        parent: Any = document
        for token in parents:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        value = copy.deepcopy(operation.get("value"))
        if op == "add" and isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), value)
        elif op in ("add", "replace") and isinstance(parent, dict):
            if op == "replace" and last not in parent:
                raise KustomizeError(f"replace: no {operation['path']}")
            parent[last] = value
        elif op == "replace" and isinstance(parent, list):
            parent[int(last)] = value
        elif op == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        else:
            raise KustomizeError(f"unsupported JSON patch operation {operation!r}")


def _load_kustomization(directory: Path) -> Manifest:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    kustomization = yaml.safe_load(path.read_text(encoding="utf-8"))
    unknown = set(kustomization) - _KUSTOMIZATION_KEYS
    if unknown:
        raise KustomizeError(f"{path}: unsupported keys {sorted(unknown)}")
    return dict(kustomization)


def _config_map(directory: Path, generator: Mapping[str, Any]) -> Manifest:
    if set(generator) != {"name", "files"}:
        raise KustomizeError(f"configMapGenerator entry {generator!r}: only name and files")
    data = {Path(f).name: (directory / f).read_text(encoding="utf-8") for f in generator["files"]}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": generator["name"]},
        "data": data,
    }


def _reject_duplicates(manifests: list[Manifest]) -> None:
    seen: set[tuple[str, str]] = set()
    for manifest in manifests:
        if identity(manifest) in seen:
            raise KustomizeError(f"resource defined twice: {identity(manifest)}")
        seen.add(identity(manifest))


def _apply_patch(directory: Path, entry: Mapping[str, Any], manifests: list[Manifest]) -> None:
    if not set(entry) <= {"path", "target"}:
        raise KustomizeError(f"patch entry {entry!r}: only path and target are supported")
    documents = load_documents(directory / entry["path"])
    if len(documents) != 1:
        raise KustomizeError(f"{entry['path']}: expected one patch document")
    patch: Any = documents[0]
    target = entry.get("target")
    if target is None:
        if not isinstance(patch, dict):
            raise KustomizeError(f"{entry['path']}: a JSON 6902 patch needs a target")
        target = {"kind": patch["kind"], "name": patch["metadata"]["name"]}
    if not set(target) <= _TARGET_KEYS:
        raise KustomizeError(f"{entry['path']}: unsupported target keys in {target!r}")
    matched = [m for m in manifests if _matches(m, target)]
    if not matched:
        raise KustomizeError(f"{entry['path']}: no resource matches {target!r}")
    for manifest in matched:
        if isinstance(patch, list):
            json6902(manifest, patch)
        else:
            strategic_merge(manifest, patch)


def _matches(manifest: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
    group, _, version = str(manifest.get("apiVersion", "")).rpartition("/")
    actual = {
        "group": group,
        "version": version,
        "kind": manifest.get("kind"),
        "name": manifest["metadata"]["name"],
    }
    return all(actual[key] == wanted for key, wanted in target.items())


def _merge_keyed_list(current: list[Any], patch: list[Any], merge_key: str) -> None:
    for item in patch:
        match = next((c for c in current if c.get(merge_key) == item.get(merge_key)), None)
        if item.get("$patch") == "delete":
            if match is not None:
                current.remove(match)
        elif match is None:
            current.append(copy.deepcopy(item))
        else:
            strategic_merge(match, item)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer must start with /: {path!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]
