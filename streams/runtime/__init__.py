"""The batch runtime and moving bytes through Kafka: the consume-process-produce-commit loop, the
plain records processors see, client configuration, Avro serde and schema registries, dead letters."""

from processors.stale_build import refuse_stale_extensions

refuse_stale_extensions(__path__[0])
