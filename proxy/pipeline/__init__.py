"""The request context and the stages of the request path, in order."""
