"""The load-test run report: recording, the report data, its table and HTML forms."""
