"""One settings object, read from the environment once and passed in where needed.

Every variable is documented in the README ("Configuration"). Nothing here is a
module-level global that other modules import: callers build a `Settings` and hand
it down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from forecasting.coding.fields import parse_floor

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_PRIORS_DIR = PROJECT_ROOT / "priors"


@dataclass(frozen=True)
class GateThresholds:
    """What a fit must meet before it may be served (forecasting.model.gate states the rule,
    docs/model.md "The gate" the reasons). Each is a setting FORECAST_GATE_<FIELD>; they are
    chosen from principle, never loosened to make a fit pass."""

    max_rhat: float = 1.01
    min_ess_bulk: float = 400.0
    min_ess_tail: float = 400.0
    max_divergences: int = 0
    min_ebfmi: float = 0.3
    max_treedepth_fraction: float = 0.01
    # posterior predictive checks: a headline check fails below this two-sided p-value
    ppc_alpha: float = 0.01
    # a per-group check lies outside its central 99% interval below this two-sided p-value
    ppc_group_alpha: float = 0.01
    # ... and the fit fails when more than this share of the per-group checks do. Under a
    # well-calibrated model each lies outside with probability 0.01 or less (in-sample p-values
    # are conservative): for the ~100 checks of the seed data, more than 5% outside has
    # probability 0.1% if they are independent, 1.7% if they come in pairs, 3% in fours
    ppc_max_group_outside: float = 0.05


GATE_SETTINGS = {  # setting -> GateThresholds field
    "FORECAST_GATE_MAX_RHAT": "max_rhat",
    "FORECAST_GATE_MIN_ESS_BULK": "min_ess_bulk",
    "FORECAST_GATE_MIN_ESS_TAIL": "min_ess_tail",
    "FORECAST_GATE_MAX_DIVERGENCES": "max_divergences",
    "FORECAST_GATE_MIN_EBFMI": "min_ebfmi",
    "FORECAST_GATE_MAX_TREEDEPTH_FRACTION": "max_treedepth_fraction",
    "FORECAST_GATE_PPC_ALPHA": "ppc_alpha",
    "FORECAST_GATE_PPC_GROUP_ALPHA": "ppc_group_alpha",
    "FORECAST_GATE_PPC_MAX_GROUP_OUTSIDE": "ppc_max_group_outside",
}
_PROBABILITIES = ("ppc_alpha", "ppc_group_alpha", "ppc_max_group_outside",
                  "max_treedepth_fraction")


def _gate_thresholds(env) -> GateThresholds:
    values = {}
    for name, attr in GATE_SETTINGS.items():
        default = getattr(GateThresholds, attr)
        read = _env_int if isinstance(default, int) else _env_float
        value = read(env, name, default)
        if value < 0 or (attr in _PROBABILITIES and value >= 1):
            limit = "between 0 and 1" if attr in _PROBABILITIES else "not negative"
            raise ValueError(f"{name}={env.get(name)!r} must be {limit}")
        values[attr] = value
    return GateThresholds(**values)


@dataclass(frozen=True)
class SamplerSettings:
    sampler: str = "nutpie"
    chains: int = 4
    # 2000 since model revision 3: at 1000 the seed fit passed the gate at sampler seeds 1-3
    # but not at the default seed (max R-hat 1.012 on sigma_bloc, five blocs weakly
    # identified); 2000 gave R-hat 1.004, min bulk / tail ESS 1238 / 872 there.
    draws: int = 2000
    # 1000 and 0.95 since model revision 3 (trigger clusters): the cluster scales' posterior
    # is harder to adapt to. Seed data, 3 seeds each (docs/performance.md): tune 500 at 0.8
    # gave min bulk ESS 389-458 with 1-4 divergences; tune 1000 at 0.9 gave 634-932 with
    # 0-1 divergences; tune 1000 at 0.95 gave 543-685 with none (31 leapfrog steps per
    # draw instead of 15). The gate allows no divergence, so 0.95.
    tune: int = 1000
    target_accept: float = 0.95
    seed: int = 20261129


@dataclass(frozen=True)
class RequestLimits:
    """What one request may ask of the service (docs/operations.md "Limits"). Each is a setting
    FORECAST_LIMIT_<FIELD>; a request beyond one is refused with 400 or 413, never served slowly."""

    max_cells: int = 2000  # forecast cells per compare / batch / grid answer (after de-duplication)
    max_draws: int = 1000  # posterior draws used per answer (thinned evenly from the fit's)
    max_json_depth: int = 16  # nesting of a JSON body
    max_text_chars: int = 4000  # notes, trigger_description and other free text
    max_sources: int = 20  # sources per episode
    max_source_chars: int = 500  # one source
    max_batch_rows: int = 10_000  # episodes per import or POST
    max_errors_listed: int = 100  # validation errors in one answer (the count says how many more)
    max_body_bytes: int = 8 * 1024 * 1024  # a 10,000-episode batch fits; more is refused (413)


LIMIT_SETTINGS = {f"FORECAST_LIMIT_{name.upper()}": name
                  for name in RequestLimits.__dataclass_fields__}


@dataclass(frozen=True)
class RateLimits:
    """Flask-Limiter rate limits, per client address (docs/operations.md "Rate limits")."""

    storage_url: str = "memory://"  # FORECAST_RATE_LIMIT_STORAGE: redis://... to share among servers
    reads: str = "600/minute"  # FORECAST_RATE_LIMIT_READS: every route
    expensive: str = "30/minute"  # FORECAST_RATE_LIMIT_EXPENSIVE: api/limits.EXPENSIVE
    failed_auth: str = "20/minute"  # FORECAST_RATE_LIMIT_FAILED_AUTH: bad or missing tokens
    enabled: bool = True  # FORECAST_RATE_LIMIT=0 turns limiting off (tests, benchmarks)


@dataclass(frozen=True)
class RetentionPolicy:
    """Which model versions `forecast models prune` (and the refit worker after a promotion)
    keeps: the current one, the last `keep_passing` that passed the gate, the last `keep_failed`
    that failed it, and every version a ledger entry or an evaluation refers to."""

    keep_passing: int = 5  # FORECAST_KEEP_PASSING
    keep_failed: int = 2  # FORECAST_KEEP_FAILED
    prune_after_refit: bool = True  # FORECAST_PRUNE_AFTER_REFIT


@dataclass(frozen=True)
class Settings:
    instance_path: Path
    database_url: str
    registry_path: Path
    data_dir: Path = DEFAULT_DATA_DIR
    priors_dir: Path = DEFAULT_PRIORS_DIR
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    gate: GateThresholds = field(default_factory=GateThresholds)
    queue_url: str = ""
    refit_delay_seconds: float = 10.0
    refit_schedule: str = "0 3 * * *"  # cron (UTC) of the periodic refit; "" disables it
    refit_stale_after_seconds: float = 60.0  # a running refit silent this long is requeued
    open_reads: bool = True
    limits: RequestLimits = field(default_factory=RequestLimits)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    token_ttl_days: float | None = None  # default expiry of new tokens; None: they never expire
    log_format: str = "text"  # "text" or "json" (one JSON object per line)
    metrics: bool = True  # Prometheus /metrics
    # FORECAST_CODING_ALPHA_FLOOR "level=0.8,severity=0.667": the inter-coder reliability a
    # refit's gate requires per coded field (forecasting.coding); empty: none required
    coding_alpha_floor: tuple[tuple[str, float], ...] = ()

    @property
    def codebook_path(self) -> Path:
        return self.data_dir / "codebook.toml"

    @property
    def seed_episodes_path(self) -> Path:
        return self.data_dir / "episodes.csv"

    @property
    def default_priors_path(self) -> Path:
        return self.priors_dir / "default.toml"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def _env_float(env, name, default):
    value = env.get(name)
    if value in (None, ""):
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number") from None


def _env_int(env, name, default):
    value = env.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a whole number") from None


def _cron(value: str) -> str:
    value = " ".join(value.split())
    if value and len(value.split()) != 5:
        raise ValueError(f"FORECAST_REFIT_SCHEDULE={value!r} must be a cron line of 5 fields "
                         "(minute hour day month weekday), or empty to disable")
    return value


def _flag(env, name, default: bool) -> bool:
    value = env.get(name)
    if value in (None, ""):
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r} must be 1 or 0 (true/false, yes/no, on/off)")


def _request_limits(env) -> RequestLimits:
    values = {}
    for name, attr in LIMIT_SETTINGS.items():
        value = _env_int(env, name, getattr(RequestLimits, attr))
        if value < 1:
            raise ValueError(f"{name}={env.get(name)!r} must be a positive whole number")
        values[attr] = value
    return RequestLimits(**values)


def _rate_limits(env) -> RateLimits:
    return RateLimits(
        storage_url=env.get("FORECAST_RATE_LIMIT_STORAGE") or RateLimits.storage_url,
        reads=env.get("FORECAST_RATE_LIMIT_READS") or RateLimits.reads,
        expensive=env.get("FORECAST_RATE_LIMIT_EXPENSIVE") or RateLimits.expensive,
        failed_auth=env.get("FORECAST_RATE_LIMIT_FAILED_AUTH") or RateLimits.failed_auth,
        enabled=_flag(env, "FORECAST_RATE_LIMIT", RateLimits.enabled),
    )


def _retention(env) -> RetentionPolicy:
    policy = RetentionPolicy(
        keep_passing=_env_int(env, "FORECAST_KEEP_PASSING", RetentionPolicy.keep_passing),
        keep_failed=_env_int(env, "FORECAST_KEEP_FAILED", RetentionPolicy.keep_failed),
        prune_after_refit=_flag(env, "FORECAST_PRUNE_AFTER_REFIT", RetentionPolicy.prune_after_refit),
    )
    if policy.keep_passing < 1 or policy.keep_failed < 0:
        raise ValueError("FORECAST_KEEP_PASSING must be at least 1 and FORECAST_KEEP_FAILED not negative")
    return policy


def _token_ttl_days(env) -> float | None:
    value = _env_float(env, "FORECAST_TOKEN_TTL_DAYS", None)
    if value is not None and value <= 0:
        raise ValueError(f"FORECAST_TOKEN_TTL_DAYS={env.get('FORECAST_TOKEN_TTL_DAYS')!r} must be "
                         "positive, or empty for tokens that never expire")
    return value


def _log_format(env) -> str:
    value = env.get("FORECAST_LOG_FORMAT") or "text"
    if value not in ("text", "json"):
        raise ValueError(f"FORECAST_LOG_FORMAT={value!r} must be text or json")
    return value


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build settings from environment variables (FORECAST_*), with documented defaults."""
    env = dict(os.environ if env is None else env)
    instance = Path(env.get("FORECAST_INSTANCE", "instance")).resolve()
    sampler = SamplerSettings(
        sampler=env.get("FORECAST_SAMPLER", SamplerSettings.sampler),
        chains=_env_int(env, "FORECAST_CHAINS", SamplerSettings.chains),
        draws=_env_int(env, "FORECAST_DRAWS", SamplerSettings.draws),
        tune=_env_int(env, "FORECAST_TUNE", SamplerSettings.tune),
        target_accept=_env_float(env, "FORECAST_TARGET_ACCEPT", SamplerSettings.target_accept),
        seed=_env_int(env, "FORECAST_SEED", SamplerSettings.seed),
    )
    return Settings(
        instance_path=instance,
        database_url=env.get("FORECAST_DATABASE_URL") or sqlite_url(instance / "forecasting.sqlite3"),
        registry_path=Path(env.get("FORECAST_REGISTRY") or instance / "models").resolve(),
        data_dir=Path(env.get("FORECAST_DATA_DIR") or DEFAULT_DATA_DIR).resolve(),
        priors_dir=Path(env.get("FORECAST_PRIORS_DIR") or DEFAULT_PRIORS_DIR).resolve(),
        sampler=sampler,
        gate=_gate_thresholds(env),
        queue_url=env.get("FORECAST_QUEUE_URL", ""),
        refit_delay_seconds=_env_float(env, "FORECAST_REFIT_DELAY", 10.0),
        refit_schedule=_cron(env.get("FORECAST_REFIT_SCHEDULE", "0 3 * * *")),
        refit_stale_after_seconds=_env_float(env, "FORECAST_REFIT_STALE_AFTER", 60.0),
        open_reads=env.get("FORECAST_OPEN_READS", "1") not in ("0", "false", "no"),
        limits=_request_limits(env),
        rate_limits=_rate_limits(env),
        retention=_retention(env),
        token_ttl_days=_token_ttl_days(env),
        log_format=_log_format(env),
        metrics=_flag(env, "FORECAST_METRICS", True),
        coding_alpha_floor=tuple(parse_floor(env.get("FORECAST_CODING_ALPHA_FLOOR", "")).items()),
    )
