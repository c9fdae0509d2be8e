"""History in ClickHouse: the client for both backends (chdb in-process, or a server) and the sink
that writes a topic's records into their table."""
