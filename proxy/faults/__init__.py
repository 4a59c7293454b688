"""Fault injection for load tests: AWS-shaped failures, on purpose, repeatably."""
