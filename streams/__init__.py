"""Kafka and state I/O: every topic, how bytes move between them, and where state lives."""

from processors.stale_build import refuse_stale_extensions

refuse_stale_extensions(__path__[0])
