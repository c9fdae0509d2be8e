"""The batch runtime and moving bytes through Kafka: the consume-process-produce-commit loop,
client configuration, Avro serde and schema registries, dead letters."""
