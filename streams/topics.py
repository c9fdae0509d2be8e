"""The topic catalog: every topic DripPulse uses, its record schema, who writes and who reads it.

All records are keyed by org_id, so one organization's events stay ordered on one partition and its
per-org state (round-robin pointers) lives with the partition's owner.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    base_name: str
    schema: str
    """Stem of the record's .avsc file under schemas/avro/."""
    written_by: str
    read_by: str


INBOUND_EVENTS = Topic(
    "drip.events.inbound",
    "inbound_event",
    written_by="producers, POST /api/v1/events, manual runs (POST /api/v1/workflows/{id}/runs), schedules",
    read_by="LeadQualifier (streams/qualifier.py); ClickHouseSink -> ClickHouse inbound_events (replay history)",
)
CRM_COMMANDS = Topic(
    "drip.crm.commands",
    "crm_command",
    written_by="LeadQualifier; the orchestrator, for resumed executions",
    read_by="CrmCommandApplier (streams/delivery/crm_applier.py) -> the org's integration connections",
)
CRM_RESULTS = Topic(
    "drip.crm.results",
    "crm_command_result",
    written_by="CrmCommandApplier, one record per (command, connection)",
    read_by="ClickHouseSink -> ClickHouse crm_command_results (GET /api/v1/crm_commands)",
)
WEBHOOK_DELIVERIES = Topic(
    "drip.webhooks.deliveries",
    "webhook_delivery",
    written_by="LeadQualifier; the orchestrator, for resumed executions and approval decisions",
    read_by="WebhookIntake (streams/delivery/webhook_intake.py) -> the Redis delivery schedule",
)
WEBHOOK_ATTEMPTS = Topic(
    "drip.webhooks.attempts",
    "webhook_attempt",
    written_by="WebhookDispatcher (streams/delivery/webhook_dispatcher.py), one record per HTTP attempt",
    read_by="ClickHouseSink -> ClickHouse webhook_attempts (GET /api/v1/webhooks/{id}/deliveries)",
)
EXECUTIONS = Topic(
    "drip.executions",
    "execution",
    written_by="LeadQualifier; the orchestrator, each time a paused execution moves on",
    read_by="ClickHouseSink (streams/sinks/clickhouse_sink.py) -> ClickHouse executions",
)
ORCHESTRATOR_INBOX = Topic(
    "drip.orchestrator.inbox",
    "orchestrator_message",
    written_by="LeadQualifier (paused executions, exits); the orchestrator (a MARK per partition it takes over)",
    read_by="the orchestrator (streams/orchestrator/app.py), a faust agent whose table holds paused executions",
)
EVENTS_DLQ = Topic(
    "drip.events.dlq",
    "dlq_record",
    written_by="every batch worker and the orchestrator, for input it cannot decode, validate or handle",
    read_by="operators",
)

ALL_TOPICS = (
    INBOUND_EVENTS,
    CRM_COMMANDS,
    CRM_RESULTS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_ATTEMPTS,
    EXECUTIONS,
    ORCHESTRATOR_INBOX,
    EVENTS_DLQ,
)


def topic_name(topic: Topic, prefix: str) -> str:
    """The topic's name on the cluster; a prefix lets several environments share one cluster."""
    return prefix + topic.base_name
