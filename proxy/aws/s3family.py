"""Which AWS names are S3's: one definition for signing, routing, classification and bodies.

S3 and its relatives (Outposts, Object Lambda, Express directory buckets) share S3's wire
rules: the path is signed exactly as sent, bodies may stream with aws-chunked signing, and the
operations are S3's REST-XML ones. Every module that must know asks here, so the lists cannot
drift apart again (an s3-outposts upload once got 413 because one copy forgot it).
"""

from __future__ import annotations

# Signing names with S3's wire rules (botocore's S3_SIGNING_NAMES).
S3_SIGNING_NAMES = frozenset({"s3", "s3-outposts", "s3-object-lambda", "s3express"})
# Endpoint prefixes whose leading host labels name a bucket (or an access point).
S3_BUCKET_PREFIXES = frozenset({"s3", "s3-accesspoint", "s3-object-lambda", "s3express"})
# The signing name whose operation table every S3 relative shares.
S3_OPERATIONS_OF = "s3"


def speaks_s3(signing_name: str) -> bool:
    """True for S3 and the services that share its signing, streaming and operations."""
    return signing_name in S3_SIGNING_NAMES
