"""S3's REST-XML operation table: method + bucket/object level + query markers -> operation.

Pure and table-driven. Names are botocore's S3 operation names; where two operations share a
wire form (GetBucketLifecycle / GetBucketLifecycleConfiguration) the current one is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote


@dataclass(frozen=True, slots=True)
class S3Target:
    """What an S3 request addresses and does."""

    name: str | None
    bucket: str | None
    key: str | None  # percent-decoded


def _crud(suffix: str, *, delete: bool = True, post: bool = False) -> dict[str, str]:
    table = {"GET": f"Get{suffix}", "PUT": f"Put{suffix}"}
    if delete:
        table["DELETE"] = f"Delete{suffix}"
    if post:
        table["POST"] = f"Create{suffix}"
    return table


# Bucket-level sub-resources: the query marker names the resource, the method the action.
_BUCKET_MARKERS: dict[str, dict[str, str]] = {
    "acl": _crud("BucketAcl", delete=False),
    "tagging": _crud("BucketTagging"),
    "policy": _crud("BucketPolicy"),
    "policyStatus": {"GET": "GetBucketPolicyStatus"},
    "versioning": _crud("BucketVersioning", delete=False),
    "lifecycle": {
        "GET": "GetBucketLifecycleConfiguration",
        "PUT": "PutBucketLifecycleConfiguration",
        "DELETE": "DeleteBucketLifecycle",
    },
    "cors": _crud("BucketCors"),
    "website": _crud("BucketWebsite"),
    "encryption": _crud("BucketEncryption"),
    "notification": _crud("BucketNotificationConfiguration", delete=False),
    "location": {"GET": "GetBucketLocation"},
    "logging": _crud("BucketLogging", delete=False),
    "replication": _crud("BucketReplication"),
    "requestPayment": _crud("BucketRequestPayment", delete=False),
    "accelerate": _crud("BucketAccelerateConfiguration", delete=False),
    "object-lock": _crud("ObjectLockConfiguration", delete=False),
    "ownershipControls": _crud("BucketOwnershipControls"),
    "publicAccessBlock": _crud("PublicAccessBlock"),
    "abac": _crud("BucketAbac", delete=False),
    "analytics": _crud("BucketAnalyticsConfiguration"),
    "inventory": _crud("BucketInventoryConfiguration"),
    "metrics": _crud("BucketMetricsConfiguration"),
    "intelligent-tiering": _crud("BucketIntelligentTieringConfiguration"),
    "metadataTable": {
        "GET": "GetBucketMetadataTableConfiguration",
        "POST": "CreateBucketMetadataTableConfiguration",
        "DELETE": "DeleteBucketMetadataTableConfiguration",
    },
    "metadataConfiguration": {
        "GET": "GetBucketMetadataConfiguration",
        "POST": "CreateBucketMetadataConfiguration",
        "DELETE": "DeleteBucketMetadataConfiguration",
    },
    "metadataInventoryTable": {"PUT": "UpdateBucketMetadataInventoryTableConfiguration"},
    "metadataJournalTable": {"PUT": "UpdateBucketMetadataJournalTableConfiguration"},
    "metadataAnnotationTable": {"PUT": "UpdateBucketMetadataAnnotationTableConfiguration"},
    "uploads": {"GET": "ListMultipartUploads"},
    "versions": {"GET": "ListObjectVersions"},
    "delete": {"POST": "DeleteObjects"},
    "session": {"GET": "CreateSession"},
}
# GET on these without `id` lists the configurations instead of reading one.
_LISTED_WITHOUT_ID = {
    "analytics": "ListBucketAnalyticsConfigurations",
    "inventory": "ListBucketInventoryConfigurations",
    "metrics": "ListBucketMetricsConfigurations",
    "intelligent-tiering": "ListBucketIntelligentTieringConfigurations",
}
_BUCKET_PLAIN = {
    "GET": "ListObjects",
    "HEAD": "HeadBucket",
    "PUT": "CreateBucket",
    "DELETE": "DeleteBucket",
    "POST": "PostObject",  # browser-based upload form; not an SDK operation
}

_OBJECT_MARKERS: dict[str, dict[str, str]] = {
    "acl": _crud("ObjectAcl", delete=False),
    "tagging": _crud("ObjectTagging"),
    "retention": _crud("ObjectRetention", delete=False),
    "legal-hold": _crud("ObjectLegalHold", delete=False),
    "attributes": {"GET": "GetObjectAttributes"},
    "torrent": {"GET": "GetObjectTorrent"},
    "restore": {"POST": "RestoreObject"},
    "select": {"POST": "SelectObjectContent"},
    "renameObject": {"PUT": "RenameObject"},
    "encryption": {"PUT": "UpdateObjectEncryption"},
    "annotation": {
        "GET": "GetObjectAnnotation",
        "PUT": "PutObjectAnnotation",
        "DELETE": "DeleteObjectAnnotation",
    },
    "uploads": {"POST": "CreateMultipartUpload"},
    "uploadId": {
        "GET": "ListParts",
        "POST": "CompleteMultipartUpload",
        "DELETE": "AbortMultipartUpload",
        "PUT": "UploadPart",
    },
}
_OBJECT_PLAIN = {
    "GET": "GetObject",
    "HEAD": "HeadObject",
    "PUT": "PutObject",
    "DELETE": "DeleteObject",
}


def query_params(query: str) -> dict[str, str]:
    """Decoded query parameters, first value of each key; bare markers (`?uploads`) map to ''."""
    params: dict[str, str] = {}
    if not query:
        return params
    for part in query.split("&"):
        if not part:
            continue
        raw_key, _, raw_value = part.partition("=")
        key = unquote(raw_key) if "%" in raw_key else raw_key
        if key not in params:
            params[key] = unquote(raw_value.replace("+", " ")) if raw_value else ""
    return params


def _split_path(path: str, host_bucket: str | None) -> tuple[str | None, str | None]:
    """Bucket and percent-decoded key. The key is kept exactly: '//', '+', spaces, '~'."""
    rest = path[1:] if path.startswith("/") else path
    if host_bucket is not None:
        bucket: str | None = host_bucket
        raw_key = rest
    else:
        raw_bucket, _, raw_key = rest.partition("/")
        bucket = unquote(raw_bucket) if raw_bucket else None
    # '+' in a path is a literal plus; invalid UTF-8 cannot name an S3 key, so replace it.
    key = unquote(raw_key, errors="replace") if raw_key else None
    return bucket, key


def classify_s3(
    method: str, host_bucket: str | None, path: str, query: str, headers: Mapping[str, str]
) -> S3Target:
    """Name the S3 operation of a request, path style or virtual-host style (`host_bucket`)."""
    bucket, key = _split_path(path, host_bucket)
    params = query_params(query)
    if bucket is None:
        return S3Target("ListBuckets" if method == "GET" else None, None, None)
    if key is None:
        return S3Target(_bucket_operation(method, params), bucket, None)
    return S3Target(_object_operation(method, params, headers), bucket, key)


def _bucket_operation(method: str, params: Mapping[str, str]) -> str | None:
    for marker in params:
        actions = _BUCKET_MARKERS.get(marker)
        if actions is None or method not in actions:
            continue
        if method == "GET" and marker in _LISTED_WITHOUT_ID and "id" not in params:
            return _LISTED_WITHOUT_ID[marker]
        return actions[method]
    if method == "GET" and params.get("list-type") == "2":
        return "ListObjectsV2"
    return _BUCKET_PLAIN.get(method)


def _object_operation(
    method: str, params: Mapping[str, str], headers: Mapping[str, str]
) -> str | None:
    copying = headers.get("x-amz-copy-source") is not None
    for marker in params:
        actions = _OBJECT_MARKERS.get(marker)
        if actions is None or method not in actions:
            continue
        if marker == "uploadId" and method == "PUT":
            return "UploadPartCopy" if copying else "UploadPart"
        if marker == "annotation" and method == "GET" and "annotationName" not in params:
            return "ListObjectAnnotations"
        return actions[method]
    if method == "PUT" and copying:
        return "CopyObject"
    return _OBJECT_PLAIN.get(method)
