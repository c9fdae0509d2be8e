"""The wire contract: the Avro schema of every record DripPulse puts on a Kafka topic.

`avro/<name>.avsc` is the current schema of each record type, and `avro/history/<name>/v<N>.avsc`
every version released before, which the embedded registry also knows so that records an earlier
build wrote still decode. These files are the single source of the contract: a client of any
language produces events with `avro/inbound_event.avsc` alone. No code lives here; the package
exists so that the .avsc files ship in the wheel as package data and are found with
`importlib.resources.files("schemas")` (streams/runtime/schema_registry.py) wherever DripPulse runs.
"""
