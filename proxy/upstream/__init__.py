"""The one place the proxy talks HTTP to AWS: framing, pool, client."""
