"""Synthetic inbound lead events, seeded so the demo, tests and benchmark are reproducible.

Outcomes (`lead.converted`, `lead.disqualified`) depend on a few known features of the lead, drawn
at random with `conversion_probability`, so the learned model has something true to find and a test
can check that it finds it. The Lead Qualification rules (processors/templates.py) only partly agree
with that truth, as a CRM's first rules do: they miss CTOs, founders and referrals, and give points
to industries that do not matter here.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

from sqlalchemy import create_engine, insert

from api.control_plane.database import migrate
from api.control_plane.ids import new_id
from api.control_plane.tables import Organization, Project, Workflow, WorkflowVersion

_FIRST = ["Ada", "Grace", "Alan", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Radia", "Edsger"]
_LAST = ["Lovelace", "Hopper", "Turing", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie", "Perlman"]
_TITLES = [
    "VP Sales",
    "Director of Marketing",
    "Head of Growth",
    "Software Engineer",
    "Analyst",
    "CTO",
    "Marketing Manager",
    "Intern",
    "Founder",
    "Sales Director",
]
_INDUSTRIES = ["software", "fintech", "healthcare", "retail", "manufacturing", "education", "media"]
_COUNTRIES = ["US", "US", "US", "CA", "GB", "DE", "FR", "NL", "BR", "IN", "AU", "JP"]
_SOURCES = ["demo_request", "web_form", "webinar", "import", "referral", "ads"]
_DOMAINS = [
    "acme.io",
    "globex.com",
    "initech.net",
    "umbrella.org",
    "gmail.com",
    "yahoo.com",
    "hooli.dev",
    "example.com",
]


def lead_event(rng: random.Random, org_id: str, n: int, occurred_at_ms: int | None = None) -> dict[str, Any]:
    """One `lead.created` record in the Avro shape of drip.events.inbound."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    lead_id = f"lead-{n:08d}"
    return {
        "event_id": f"{org_id}-evt-{n:08d}",
        "org_id": org_id,
        "event_type": "LEAD_CREATED",
        "occurred_at_ms": occurred_at_ms if occurred_at_ms is not None else int(time.time() * 1000),
        "source": "synthetic",
        "lead": {
            "lead_id": lead_id,
            "email": f"{first.lower()}.{last.lower()}.{n}@{rng.choice(_DOMAINS)}",
            "first_name": first,
            "last_name": last,
            "company": f"{last} Holdings",
            "title": rng.choice(_TITLES),
            "country": rng.choice(_COUNTRIES),
            "industry": rng.choice(_INDUSTRIES),
            "employees": rng.choice([5, 20, 80, 150, 250, 800, 2500, 12000]),
            "annual_revenue": float(rng.randrange(100_000, 50_000_000, 50_000)),
            "lead_source": rng.choice(_SOURCES),
            "attributes": {"utm_campaign": rng.choice(["spring", "summer", "brand", "retarget"])},
        },
        "crm_object": None,
        "previous": None,
    }


CONVERTING_TITLES = frozenset({"VP Sales", "Sales Director", "CTO", "Founder"})
CONVERTING_SOURCES = frozenset({"referral", "demo_request"})
FREE_MAIL = frozenset({"gmail.com", "yahoo.com"})
BASE_LOG_ODDS = -2.2
DRIVERS = {
    "title in CONVERTING_TITLES": 1.8,
    "lead_source in CONVERTING_SOURCES": 1.5,
    "100 <= employees < 1000": 1.0,
    "attributes.utm_campaign == retarget": 1.0,
    "free-mail email": -1.2,
}
"""The log-odds each known feature adds to a synthetic lead's chance to convert."""


def conversion_probability(lead: dict[str, Any]) -> float:
    """The true chance that a synthetic lead converts: logistic in the `DRIVERS` it has."""
    has = (
        lead["title"] in CONVERTING_TITLES,
        lead["lead_source"] in CONVERTING_SOURCES,
        100 <= lead["employees"] < 1000,
        lead["attributes"].get("utm_campaign") == "retarget",
        lead["email"].rsplit("@", 1)[-1] in FREE_MAIL,
    )
    z = BASE_LOG_ODDS + sum(weight for weight, present in zip(DRIVERS.values(), has, strict=True) if present)
    return 1 / (1 + math.exp(-z))


def outcome_event(lead_event: dict[str, Any], converted: bool, occurred_at_ms: int) -> dict[str, Any]:
    """The lead's outcome in the Avro shape: only its id (an outcome says what happened to a lead,
    not what the lead is), and a reason for a disqualification."""
    lead_id = lead_event["lead"]["lead_id"]
    attributes = {} if converted else {"reason": "no budget"}
    return {
        **lead_event,
        "event_id": f"{lead_event['event_id']}-outcome",
        "event_type": "LEAD_CONVERTED" if converted else "LEAD_DISQUALIFIED",
        "occurred_at_ms": occurred_at_ms,
        "lead": {**{key: None for key in lead_event["lead"]}, "lead_id": lead_id, "attributes": attributes},
    }


def create_orgs(database_url: str, definitions: list[dict[str, Any]], count: int, name: str) -> list[str]:
    """`count` organizations (named `{name}-{n}`), each with every definition as an active workflow in
    its default project; their ids. Inserted in bulk, without audit entries: a benchmark's thousand
    orgs through the API would take minutes, and they are nobody's change to audit."""
    migrate(database_url)
    orgs, projects, workflows, versions = [], [], [], []
    for n in range(count):
        org_id, project_id = new_id("org"), new_id("prj")
        orgs.append({"id": org_id, "name": f"{name}-{n}", "config_revision": 1})
        projects.append({"id": project_id, "org_id": org_id, "name": "Default", "is_default": True, "policy": {}})
        for k, definition in enumerate(definitions):
            workflow_id = new_id("wf")
            workflows.append(
                {
                    "id": workflow_id,
                    "org_id": org_id,
                    "project_id": project_id,
                    "name": f"wf-{k}",
                    "status": "active",
                    "active_version": 1,
                    "latest_version": 1,
                }
            )
            versions.append(
                {
                    "workflow_id": workflow_id,
                    "version": 1,
                    "org_id": org_id,
                    "status": "active",
                    "definition": definition,
                    "authored_by": "system:synthetic",
                }
            )
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            for table, rows in (
                (Organization, orgs),
                (Project, projects),
                (Workflow, workflows),
                (WorkflowVersion, versions),
            ):
                if rows:
                    connection.execute(insert(table), rows)
    finally:
        engine.dispose()
    return [str(org["id"]) for org in orgs]
