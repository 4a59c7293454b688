"""The command line: run, check-config, whoami, mfa."""
