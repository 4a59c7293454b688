"""The config: frozen dataclasses and the strict YAML parser."""
