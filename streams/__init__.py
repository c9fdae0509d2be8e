"""Kafka and state I/O: every topic, how bytes move between them, and where state lives."""
