"""Composition root: settings, the embedded local stack, the process supervisor and the CLI."""
