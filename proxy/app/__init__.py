"""Wiring, listeners, drain and reload, and the admin endpoints."""
