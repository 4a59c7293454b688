"""The client side of the connection: asyncio protocol on httptools (llhttp), timeouts, caps,
the body memory budget, 100-continue, and writing answers back (see proxy.front.protocol)."""
