"""What AWS is: endpoints and host grammar, routing, operations, error formats, data."""
