"""throttle-proxy: an AWS SigV4 signing and client-side throttling sidecar."""

__version__ = "0.1.0"
