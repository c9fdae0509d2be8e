"""The learned lead model of an organization: its versions, the current one and what weighs most in
it, and a backtest against the rules over the org's history (docs/models.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.control_plane import lead_models
from api.control_plane.tables import LeadModelVersion
from api.cursors import PageCursor, numbered_after_cursor, row_page
from api.deps import Db, ModelsBacktest, ModelsRead, get_outcome_history
from api.models import Page, ms, required_ms
from api.outcome_history_reader import OutcomeHistoryReader
from api.problems import Problem, responses
from processors.backtest import backtest, examples
from processors.learned_model import LearnedModel

router = APIRouter(prefix="/api/v1/models", tags=["models"], responses=responses(401, 403, 422))
History = Annotated[OutcomeHistoryReader, Depends(get_outcome_history)]
MAX_BACKTEST_OUTCOMES = 200_000


class ModelMetrics(BaseModel):
    """Progressive figures: every outcome was predicted before the model learned from it."""

    examples: int
    conversion_rate: float | None
    log_loss: float | None = Field(description="Mean over every outcome learned from; lower is better.")
    recent_auc: float | None = Field(description="Over the latest `recent_window` outcomes; 0.5 is a coin toss.")
    recent_window: int


class ModelVersionOut(BaseModel):
    version: int
    created_at_ms: int
    trained_on: int = Field(description="Outcomes learned from, over all versions.")
    metrics: ModelMetrics


class FeatureWeight(BaseModel):
    feature: str = Field(description="e.g. `lead_source=referral`, `title~vp`, `employees=100-999`")
    weight: float = Field(description="Log-odds it adds to a lead's chance to convert; negative lowers it.")


class CurrentModelOut(ModelVersionOut):
    bias: float = Field(description="Log-odds of a lead with none of the features.")
    features: int = Field(description="Features with a weight.")
    top_weights: list[FeatureWeight] = Field(description="The largest weights either way, largest first.")


def _version(row: LeadModelVersion) -> ModelVersionOut:
    return ModelVersionOut(
        version=row.version,
        created_at_ms=required_ms(row.created_at),
        trained_on=row.trained_on,
        metrics=ModelMetrics(**row.metrics),
    )


@router.get("", response_model=Page[ModelVersionOut], responses=responses(400))
async def list_models(
    principal: ModelsRead,
    database: Db,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: PageCursor = None,
) -> Page[ModelVersionOut]:
    """The org's model versions, newest first (the trainer keeps the latest DRIPPULSE_MODEL_VERSIONS_KEPT)."""
    async with database.transaction() as session:
        found = await lead_models.versions(session, principal.org_id, limit + 1, numbered_after_cursor(cursor))
    return row_page(found, limit, lambda row: (row.created_at, str(row.version)), _version)


@router.get("/current", response_model=CurrentModelOut, responses=responses(404))
async def current_model(
    principal: ModelsRead,
    database: Db,
    top: Annotated[int, Query(ge=1, le=100, description="How many of the largest weights.")] = 20,
) -> CurrentModelOut:
    async with database.transaction() as session:
        row = await lead_models.current(session, principal.org_id)
    if row is None:
        raise Problem(
            404, "no-model", "No model yet", "the organization's model learns from lead.converted and lead.disqualified"
        )
    model = LearnedModel.from_json(row.trained_on, row.weights, row.state)
    return CurrentModelOut(
        **_version(row).model_dump(),
        bias=model.bias,
        features=len(model.weights),
        top_weights=[FeatureWeight(feature=name, weight=weight) for name, weight in model.top_weights(top)],
    )


class BacktestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train_share: float = Field(
        default=0.7, ge=0.1, le=0.9, description="The earlier share of the outcomes to train on; the rest is judged."
    )
    last: int = Field(
        default=50_000, ge=10, le=MAX_BACKTEST_OUTCOMES, description="How many of the latest outcomes to take."
    )
    since: datetime | None = Field(default=None, description="Only outcomes at or after this time.")
    until: datetime | None = Field(default=None, description="Only outcomes before this time.")
    workflow_id: str | None = Field(
        default=None,
        max_length=64,
        description="Whose score the rules' side is; by default the workflow that evaluated most of these leads.",
    )

    @model_validator(mode="after")
    def _window(self) -> BacktestRequest:
        since, until = ms(self.since), ms(self.until)
        if since is not None and until is not None and since >= until:
            raise ValueError("since must be before until")
        return self


class Scores(BaseModel):
    auc: float | None = Field(description="Chance a converted lead ranks above another; 0.5 is a coin toss.")
    log_loss: float | None = Field(description="Of the probabilities; lower is better.")


class TierOut(BaseModel):
    tier: str = Field(description="The rules' tier; empty: no tier (no execution, or filtered out).")
    leads: int
    conversion_rate: float
    learned_probability: float = Field(description="The learned model's mean probability: calibrated when close.")
    rules_probability: float | None = Field(description="The mean rate the earlier part saw at these scores.")


class BacktestOut(BaseModel):
    outcomes: int = Field(description="Outcomes whose lead was described before them.")
    without_features: int = Field(description="Outcomes of leads with no earlier lead.created/updated: left out.")
    train: int
    test: int
    split_at_ms: int | None = Field(description="The first judged outcome's time.")
    test_conversion_rate: float | None
    rules_workflow_id: str | None = Field(description="The workflow whose score the rules' side is.")
    without_rules_score: int = Field(description="Judged outcomes of leads that workflow never scored.")
    learned: Scores
    rules: Scores
    per_tier: list[TierOut]
    top_weights: list[FeatureWeight] = Field(description="Of the model trained on the earlier part.")


@router.post("/backtest", response_model=BacktestOut)
async def backtest_model(principal: ModelsBacktest, body: BacktestRequest, history: History) -> BacktestOut:
    """Trains a fresh model on the earlier outcomes, in order, and judges it and the rules on the
    later ones. Reads ClickHouse; changes nothing."""
    return BacktestOut(**await run_in_threadpool(_backtest, history, principal.org_id, body))


def _backtest(history: OutcomeHistoryReader, org_id: str, body: BacktestRequest) -> dict[str, Any]:
    since, until = ms(body.since), ms(body.until)
    outcomes, events = history.outcomes(org_id, body.last, since, until)
    workflow_id, verdicts = history.verdicts(org_id, body.workflow_id, body.last, since, until)
    found, without = examples(outcomes, events, verdicts)
    return {
        **backtest(found, body.train_share),
        "without_features": without,
        "rules_workflow_id": workflow_id,
    }
