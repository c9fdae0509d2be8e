"""Delivery to the outside world: webhooks (intake from Kafka into a Redis schedule, the dispatcher
that signs and sends them) and CRM commands (the applier, its connectors, rate limits and the
parking of commands a failing CRM cannot take yet), over one SSRF-guarded HTTP client."""
