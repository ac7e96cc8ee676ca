"""The one table from the project's exceptions to what each face answers.

The API turns a listed exception into a problem+json response with the status and title
below (api/problems.py); the `forecast` command prints its message on standard error and
exits with `EXIT_CODE` (forecasting/cli). An exception not listed here is a bug: the API
answers 500 and logs it, the command shows the traceback.
"""

from __future__ import annotations

from typing import Any

from forecasting.domain.codebook import UnknownCodeError
from forecasting.domain.episodes import EpisodeValidationError
from forecasting.evaluation.reports import NoEvaluationError, SensitivityUnavailableError
from forecasting.model.priors import PriorConfigError
from forecasting.registry import (
    GateFailedError,
    IntegrityError,
    NoCurrentModelError,
    UnknownVersionError,
    VersionExistsError,
)
from forecasting.services.coding import AdjudicationError
from forecasting.services.forecasts import InconsistentTriggerError, UnknownTriggerError
from forecasting.services.ledger import LedgerConflictError, LedgerError, LedgerNotFoundError
from forecasting.services.models import CandidateFitError
from forecasting.serving.forecasts import NotInModelError, ScenarioError
from forecasting.serving.horizons import NoArrivalModelError
from forecasting.store import UnknownEpisodeError
from forecasting.store.codings import CodingsImportError
from forecasting.store.db import SchemaOutOfDateError
from forecasting.store.episodes import NotDoubleCodedError
from forecasting.store.tokens import TokenError

EXIT_CODE = 1  # of `forecast` on any listed error (2 is click's, for a bad option)

# exception class -> (HTTP status, problem title); the first match wins
ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (EpisodeValidationError, 400, "Invalid episodes"),
    (UnknownCodeError, 400, "Unknown code"),
    (LedgerConflictError, 409, "Conflicts with the forecast ledger"),  # before its base
    (LedgerError, 400, "Invalid ledger request"),
    (LedgerNotFoundError, 404, "Not in the forecast ledger"),
    (ScenarioError, 400, "Invalid scenario"),
    (PriorConfigError, 400, "Invalid priors"),
    (TokenError, 400, "Invalid token request"),
    (AdjudicationError, 400, "Invalid adjudication"),
    (CodingsImportError, 400, "Invalid codings"),
    (UnknownEpisodeError, 404, "Unknown episode"),
    (UnknownTriggerError, 404, "Unknown trigger"),
    (UnknownVersionError, 404, "Unknown model version"),
    (NotInModelError, 404, "Not in this model version"),
    (NoEvaluationError, 404, "No evaluation"),
    (GateFailedError, 409, "Model version failed its diagnostics gate"),
    (CandidateFitError, 409, "Model version is a candidate fit of priors not adopted"),
    (VersionExistsError, 409, "Model version exists"),
    (SensitivityUnavailableError, 409, "Sensitivity unavailable"),
    (InconsistentTriggerError, 409, "Trigger coded inconsistently"),
    (NotDoubleCodedError, 409, "Episode not double-coded"),
    (NoArrivalModelError, 409, "No trigger arrival model in this version"),
    (NoCurrentModelError, 503, "No current model"),
    (SchemaOutOfDateError, 503, "Database not initialised"),
    (IntegrityError, 500, "Model version is corrupted"),
)
EXPECTED: tuple[type[Exception], ...] = tuple(cls for cls, _, _ in ERRORS)


def classify(exc: BaseException) -> tuple[int, str] | None:
    """(HTTP status, title) of a listed exception, else None."""
    for cls, status, title in ERRORS:
        if isinstance(exc, cls):
            return status, title
    return None


def field_errors(exc: BaseException) -> list[dict[str, Any]] | None:
    """The fields an error is about, for clients that show them beside their inputs."""
    if isinstance(exc, EpisodeValidationError):
        return [{"field": e.field, "line": e.line, "message": e.message} for e in exc.errors]
    if isinstance(exc, UnknownCodeError):
        return [{"field": exc.field, "message": f"unknown code {exc.value!r}",
                 "allowed": exc.allowed}]
    if isinstance(exc, AdjudicationError | NotDoubleCodedError | CandidateFitError):
        return [{"field": exc.field, "message": str(exc)}]
    if isinstance(exc, ScenarioError | NotInModelError | UnknownTriggerError
                  | InconsistentTriggerError | LedgerError | LedgerNotFoundError):
        return [{"field": exc.field, "message": str(exc)}]
    if isinstance(exc, CodingsImportError):
        return exc.errors
    if isinstance(exc, PriorConfigError):
        if exc.errors:  # every problem found, each with its field
            return exc.errors
        # a one-message error starts with the key it is about: "sigma_bloc.kwargs.sigma: ..."
        key = str(exc).split(":", 1)[0]
        return None if " " in key else [{"field": key, "message": str(exc)}]
    return None
