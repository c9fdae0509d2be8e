"""The permission matrix against the product's words, role by role (the role-matrix integration test
then holds every route to the matrix)."""

from __future__ import annotations

from api.control_plane.actors import Actor
from api.permissions import MATRIX, Action, Principal, Role, allows

READS = {
    Action.PROJECTS_READ,
    Action.WORKFLOWS_READ,
    Action.CHANGE_REQUESTS_READ,
    Action.APPROVALS_READ,
    Action.EXECUTIONS_READ,
    Action.WEBHOOKS_READ,
    Action.INBOUND_SOURCES_READ,
    Action.INTEGRATIONS_READ,
    Action.CRM_COMMANDS_READ,
    Action.MODELS_READ,
    Action.UNIT_PRICES_READ,
    Action.AGENT_TEMPLATES_READ,
    Action.AGENTS_READ,
}
"""What every role reads. The audit log, keys and members are an Admin's to read."""

SPEC: dict[Role, set[Action]] = {
    Role.VIEWER: {Action.ACCOUNT, *READS},
    Role.APPROVER: {Action.ACCOUNT, *READS, Action.CHANGE_REQUESTS_DECIDE, Action.APPROVALS_DECIDE},
    Role.EDITOR: {
        Action.ACCOUNT,
        *READS,
        Action.WORKFLOWS_AUTHOR,
        Action.WORKFLOWS_TEST,
        Action.WORKFLOWS_ACTIVATE,
        Action.WORKFLOWS_RUN,
        Action.APPROVALS_DECIDE,
        Action.EVENTS_SEND,
        Action.WEBHOOKS_MANAGE,
        Action.INBOUND_SOURCES_MANAGE,
        Action.CRM_COMMANDS_RETRY,
        Action.MODELS_BACKTEST,
        Action.AGENT_TEMPLATES_AUTHOR,
        Action.AGENT_TEMPLATES_ACTIVATE,
        Action.AGENTS_MANAGE,
        Action.AGENTS_INVOKE,
    },
}
SPEC[Role.ADMIN] = SPEC[Role.EDITOR] | {
    Action.MEMBERS_MANAGE,
    Action.API_KEYS_MANAGE,
    Action.INTEGRATIONS_MANAGE,
    Action.PROJECTS_MANAGE,
    Action.AUDIT_READ,
    Action.UNIT_PRICES_MANAGE,
}


def _person(*roles: Role) -> Principal:
    return Principal("org_1", frozenset(roles), Actor("user", "usr_1", "ada@example.com", "usr_1"))


def test_each_role_may_do_exactly_what_the_product_says() -> None:
    for role, actions in SPEC.items():
        allowed = {action for action in MATRIX if action is not Action.PUBLIC and allows(_person(role), action)}
        assert allowed == actions, role


def test_roles_combine_and_no_admin_decides_a_change_without_the_approver_role() -> None:
    assert not allows(_person(Role.ADMIN, Role.EDITOR), Action.CHANGE_REQUESTS_DECIDE)
    assert allows(_person(Role.ADMIN, Role.APPROVER), Action.CHANGE_REQUESTS_DECIDE)


def test_keys_never_decide_and_scoped_keys_stay_in_their_project() -> None:
    approver_key = Principal("org_1", frozenset({Role.APPROVER}), Actor("api_key", "key_1", "k"))
    assert not allows(approver_key, Action.CHANGE_REQUESTS_DECIDE)
    assert not allows(approver_key, Action.APPROVALS_DECIDE), "a person decides an approval step"
    scoped = Principal("org_1", frozenset({Role.ADMIN}), Actor("api_key", "key_2", "k"), project_id="prj_1")
    assert allows(scoped, Action.WORKFLOWS_AUTHOR) and allows(scoped, Action.EVENTS_SEND)
    for org_level in (Action.API_KEYS_MANAGE, Action.MEMBERS_MANAGE, Action.WEBHOOKS_READ, Action.AUDIT_READ):
        assert not allows(scoped, org_level)


def test_an_agent_key_invokes_agents_of_its_project_and_never_decides_or_issues_keys() -> None:
    """Agent keys do the work (invoke, propose template changes) and nothing that is a person's act."""
    agent = Principal("org_1", frozenset({Role.ADMIN}), Actor("api_key", "key_3", "k"), project_id="prj_1", agent=True)
    for work in (Action.AGENTS_INVOKE, Action.AGENTS_MANAGE, Action.AGENT_TEMPLATES_AUTHOR):
        assert allows(agent, work)
    for persons_act in (
        Action.CHANGE_REQUESTS_DECIDE,
        Action.APPROVALS_DECIDE,
        Action.API_KEYS_MANAGE,
        Action.MEMBERS_MANAGE,
    ):
        assert not allows(agent, persons_act)
