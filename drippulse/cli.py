"""The `drippulse` command: local stack, organizations, API server, workers, demo."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import typer

from drippulse.settings import Settings, load_settings

app = typer.Typer(no_args_is_help=True, help="DripPulse: Kafka stream processing for CRM workflow automation.")
dev = typer.Typer(
    no_args_is_help=True, help="The embedded local stack (Kafka protocol broker, Redis, PostgreSQL, chdb)."
)
orgs = typer.Typer(no_args_is_help=True, help="Organizations.")
users = typer.Typer(no_args_is_help=True, help="People.")
db = typer.Typer(no_args_is_help=True, help="The control plane's PostgreSQL schema.")
secrets = typer.Typer(no_args_is_help=True, help="Secrets sealed at rest.")
dlq = typer.Typer(no_args_is_help=True, help="The dead-letter topic: count letters, replay them once fixed.")
worker = typer.Typer(no_args_is_help=True, help="Hot-path batch workers.")
app.add_typer(dev, name="dev")
app.add_typer(orgs, name="orgs")
app.add_typer(users, name="users")
app.add_typer(db, name="db")
app.add_typer(secrets, name="secrets")
app.add_typer(dlq, name="dlq")
app.add_typer(worker, name="worker")
ROLES = ("admin", "editor", "viewer", "approver")


def _settings() -> Settings:
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return settings


@dev.command("up")
def dev_up() -> None:
    """Start the embedded services in the background (only those whose URL env var is unset).
    PostgreSQL and Redis keep their data under DRIPPULSE_HOME across `dev down`; topics do not."""
    from drippulse.devstack import EmbeddedStack, StackError, status

    settings = _settings()
    try:
        EmbeddedStack(settings, attached=False).start()
    except StackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for name, state in status(settings).items():
        typer.echo(f"{name:<11} {state}")


@dev.command("down")
def dev_down() -> None:
    """Stop what `dev up` started."""
    from drippulse.devstack import stop_detached

    stopped = stop_detached(_settings())
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@dev.command("status")
def dev_status() -> None:
    """Health of each part of the stack."""
    from drippulse.devstack import status

    states = status(_settings())
    for name, state in states.items():
        typer.echo(f"{name:<11} {state}")
    if any("DOWN" in state for state in states.values()):
        raise typer.Exit(1)


def _invitation_hint(token: str | None) -> None:
    if token is not None:
        typer.echo(f"invitation: {token}")
        typer.echo(
            "No password was given: the person accepts with POST /api/v1/auth/invitations/accept "
            '{"token": "<invitation>", "password": "…"}, setting their first password, or giving the one '
            "their account has; until then they cannot log in to this organization.",
            err=True,
        )


@orgs.command("create")
def orgs_create(
    name: str,
    admin_email: str | None = typer.Option(None, help="Also create the first person (Admin, Editor, Approver)."),
    admin_password: str | None = typer.Option(
        None, envvar="DRIPPULSE_ADMIN_PASSWORD", help="Their password; without one, an invitation token is printed."
    ),
) -> None:
    """Create an organization and its default project; prints its id and an admin API key (shown once,
    stored hashed), which acts for the --admin-email person when given, else for nobody."""
    from drippulse.operators import OperatorError, create_org

    try:
        created = create_org(_settings(), name, admin_email, admin_password)
    except OperatorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"org_id:  {created.org_id}")
    typer.echo(f"api_key: {created.api_key}")
    if created.admin_user_id:
        typer.echo(f"admin:   {created.admin_user_id}")
    _invitation_hint(created.admin_invitation)
    typer.echo("Store the key now: it is not shown again.", err=True)


@users.command("create")
def users_create(
    email: str,
    org: str = typer.Option(..., help="The organization's id, or its name when unique."),
    role: list[str] = typer.Option(..., help=f"One of {', '.join(ROLES)}; repeat for several."),
    name: str = typer.Option("", help="The person's name."),
    password: str | None = typer.Option(
        None, envvar="DRIPPULSE_USER_PASSWORD", help="Without one, prints the invitation the person accepts."
    ),
) -> None:
    """Add a person to an organization with one or more roles."""
    from drippulse.operators import OperatorError, create_user

    unknown = sorted(set(role) - set(ROLES))
    if unknown:
        typer.echo(f"error: unknown role(s) {', '.join(unknown)}; use {', '.join(ROLES)}", err=True)
        raise typer.Exit(2)
    try:
        org_id, user_id, invitation = create_user(_settings(), org, email, name, sorted(set(role)), password)
    except OperatorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"org_id:  {org_id}")
    typer.echo(f"user_id: {user_id}")
    _invitation_hint(invitation)


@secrets.command("reseal")
def secrets_reseal() -> None:
    """Seal every stored secret with the newest key of DRIPPULSE_SECRET_KEY. To rotate: put a new key
    in front (`NEW,OLD`) on every process, run this, then drop OLD."""
    from drippulse.operators import reseal_secrets

    typer.echo(f"resealed {reseal_secrets(_settings())} secrets with the newest key")


ErrorKind = typer.Option(None, "--error-kind", help="decode, validation or processing.")
ConsumerGroup = typer.Option(None, "--consumer-group", help="Only letters this consumer group wrote.")
OrgOption = typer.Option(None, "--org", help="Only letters of this organization (its records' key).")


@dlq.command("count")
def dlq_count(
    error_kind: str | None = ErrorKind, consumer_group: str | None = ConsumerGroup, org: str | None = OrgOption
) -> None:
    """Letters per source topic, consumer group and error kind."""
    from drippulse.dead_letter_replay import LetterFilter, count

    counted = count(_settings(), LetterFilter(error_kind, consumer_group, org))
    for (topic, group, kind), letters in sorted(counted.items()):
        typer.echo(f"{letters:>8}  {topic}  {group or '-'}  {kind}")
    typer.echo(f"{sum(counted.values()):>8}  in all")


@dlq.command("replay")
def dlq_replay(
    error_kind: str | None = ErrorKind,
    consumer_group: str | None = ConsumerGroup,
    org: str | None = OrgOption,
    dry_run: bool = typer.Option(False, help="Count what would be replayed, produce nothing."),
) -> None:
    """Produce the original records of these letters to their source topics again. Fix the cause
    first: a record that still cannot be used is dead-lettered again."""
    from drippulse.dead_letter_replay import LetterFilter, replay

    replayed = replay(_settings(), LetterFilter(error_kind, consumer_group, org), dry_run)
    typer.echo(f"{'would replay' if dry_run else 'replayed'} {replayed} records")


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the control plane's migrations (every process also does at start-up)."""
    from api.control_plane.database import migrate

    migrate(_settings().database_url)
    typer.echo("the control plane schema is up to date")


@app.command("api")
def api_server() -> None:
    """Serve /api/v1 (and, with embedded ClickHouse, run the execution sink in-process)."""
    import uvicorn

    from api.app import create_app
    from drippulse.workers import embedded_background

    settings = _settings()
    app = create_app(settings, embedded_background(settings))
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_level="warning")


@worker.command("qualifier")
def worker_qualifier(
    ready_file: Path | None = typer.Option(None, help="Touched once the worker owns partitions."),
) -> None:
    """Evaluate workflows for drip.events.inbound."""
    from drippulse.workers import build_qualifier, run_until_signalled

    run_until_signalled(build_qualifier(_settings(), ready_file))


@worker.command("trainer")
def worker_trainer(
    ready_file: Path | None = typer.Option(None, help="Touched once the worker owns partitions."),
) -> None:
    """Learn each organization's lead score from the outcomes on drip.events.inbound (its own group)."""
    from drippulse.workers import build_trainer, run_until_signalled

    run_until_signalled(build_trainer(_settings(), ready_file))


@worker.command("webhooks")
def worker_webhooks(
    ready_file: Path | None = typer.Option(None, help="Touched once the intake owns partitions."),
) -> None:
    """Deliver drip.webhooks.deliveries to subscribed endpoints, signed, with durable retries."""
    from drippulse.workers import run_webhook_worker

    run_webhook_worker(_settings(), ready_file)


@worker.command("crm")
def worker_crm(
    ready_file: Path | None = typer.Option(None, help="Touched once the worker owns partitions."),
) -> None:
    """Apply drip.crm.commands through each organization's integration connections."""
    from drippulse.workers import build_crm_applier, run_until_signalled

    run_until_signalled(build_crm_applier(_settings(), ready_file))


@worker.command("orchestrator")
def worker_orchestrator(
    ready_file: Path | None = typer.Option(None, help="Touched once it holds its partitions' executions."),
) -> None:
    """Hold executions paused at approval and wait steps and resume them (a faust-streaming app)."""
    from drippulse.orchestrator_worker import run_orchestrator

    run_orchestrator(_settings(), ready_file)


@worker.command("sink")
def worker_sink(
    ready_file: Path | None = typer.Option(None, help="Touched once every sink owns partitions."),
) -> None:
    """Write executions, inbound history, webhook attempts and CRM results to a ClickHouse server.

    With chdb these sinks run inside `drippulse api` instead (chdb allows one process)."""
    from drippulse.workers import build_sinks, run_until_signalled
    from streams.sinks.clickhouse import apply_schema, connect_clickhouse

    settings = _settings()
    if settings.embedded_clickhouse:
        typer.echo("CLICKHOUSE_URL is unset: the embedded sink runs inside `drippulse api`.", err=True)
        raise typer.Exit(2)
    clickhouse = connect_clickhouse(settings.clickhouse_url, settings.chdb_path, settings.clickhouse_database)
    apply_schema(clickhouse)
    run_until_signalled(*build_sinks(settings, clickhouse, ready_file))


@app.command("demo")
def demo(
    leads: int = typer.Option(20_000, help="How many synthetic leads to push through Kafka."),
    serve: bool = typer.Option(False, help="Keep serving after the summary until Ctrl-C."),
) -> None:
    """Run the Lead Qualification demo end to end and print the summary from ClickHouse."""
    from drippulse.demo import DemoFailed, run_demo
    from drippulse.devstack import StackError

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C: children first
    try:
        run_demo(_settings(), leads, serve)
    except KeyboardInterrupt:
        typer.echo("stopped")
    except (DemoFailed, StackError) as exc:
        typer.echo(f"demo failed: {exc}", err=True)
        raise typer.Exit(1) from None
