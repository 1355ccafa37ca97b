"""Command-line configuration: flags made from config dataclasses, the roles' flag groups and the
per-environment-family presets."""
