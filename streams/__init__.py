"""Kafka and state I/O: every topic, how bytes move between them, and where state lives.

- `topics.py`: the topic catalog (who writes and who reads each topic).
- `qualifier.py`: the hot-path worker, inbound events to commands, notifications and executions.
- `runtime/`: the batch loop (consume, process, produce, wait for acks, commit), Kafka clients,
  Avro serde and schema registries, dead letters.
- `state/`: Redis hot state and the control plane as workers read it (revision-checked caches).
- `delivery/`: webhooks and CRM commands to the outside world.
- `sinks/`: history in ClickHouse.
"""

from processors.stale_build import refuse_stale_extensions

refuse_stale_extensions(__path__[0])
