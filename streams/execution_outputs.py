"""The records an execution emits: its CRM commands, its webhook notifications, the calls of its
agent steps and the execution itself. The qualifier and the orchestrator both emit through here, so
a command, a message or a call has the same id and shape whichever of them ran its step."""

from __future__ import annotations

import orjson

from processors import ids
from processors.execution import Execution
from streams.agent_calls import AgentCalls
from streams.runtime.records import OutputRecord
from streams.runtime.serde import AvroSerde


class ExecutionOutputs:
    def __init__(
        self,
        executions: tuple[AvroSerde, str],
        crm_commands: tuple[AvroSerde, str],
        webhook_deliveries: tuple[AvroSerde, str],
        agent_calls: AgentCalls,
    ) -> None:
        self._executions, self._executions_topic = executions
        self._crm, self._crm_topic = crm_commands
        self._webhooks, self._webhooks_topic = webhook_deliveries
        self._agent_calls = agent_calls

    def emit(self, execution: Execution, at_ms: int, outputs: list[OutputRecord]) -> None:
        key = execution.org_id.encode()
        for command in execution.crm_commands:
            outputs.append(
                (
                    self._crm_topic,
                    key,
                    self._crm.encode(
                        {
                            "command_id": ids.crm_command_id(execution.execution_id, command.step),
                            "org_id": execution.org_id,
                            "execution_id": execution.execution_id,
                            "workflow_id": execution.workflow_id,
                            "operation": command.operation,
                            "lead_id": execution.lead_id,
                            "email": command.email,
                            "properties": command.properties,
                            "created_at_ms": at_ms,
                        }
                    ),
                )
            )
        for notification in execution.notifications:
            outputs.append(
                (
                    self._webhooks_topic,
                    key,
                    self._webhooks.encode(
                        {
                            "message_id": ids.webhook_message_id(execution.execution_id, notification.step),
                            "org_id": execution.org_id,
                            "execution_id": execution.execution_id,
                            "event_type": notification.event_type,
                            "payload_json": orjson.dumps(notification.payload).decode(),
                            "created_at_ms": at_ms,
                        }
                    ),
                )
            )
        if execution.agent_calls:
            self._agent_calls.emit(execution, at_ms, outputs)
        execution.evaluated_at_ms = at_ms
        outputs.append((self._executions_topic, key, self._executions.encode_attributes(execution)))
