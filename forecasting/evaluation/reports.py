"""Evaluation results stored beside the model version they belong to, and the entry points
the CLI and the API share: `backtest_report`, `sbc_report`, `sensitivity_report`,
`comparison_report` (leaving triggers out).

Registry version folders are immutable, so results live in
`<instance>/evaluation/<version>/`: `<kind>.json` (backtest, sbc, sensitivity, comparison) and
`<plot>.png` (reliability, scores, pit, sbc). Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from forecasting.domain.codebook import Codebook
from forecasting.json_values import finite
from forecasting.model.priors import PriorSet, load_priors
from forecasting.registry import ModelVersion, Registry, utc_now_iso
from forecasting.services.coding import modelled_episodes
from forecasting.settings import SamplerSettings, Settings

log = logging.getLogger(__name__)
KINDS = ("backtest", "sbc", "sensitivity", "comparison")
PLOTS = ("reliability", "scores", "pit", "sbc")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class NoEvaluationError(LookupError):
    """Nothing has been evaluated for this model version yet."""


class SensitivityUnavailableError(ValueError):
    """The stored fit lacks the groups power-scaling needs (log_prior, log_likelihood)."""


def evaluation_dir(settings: Settings, version: str) -> Path:
    if not _NAME.match(version):
        raise ValueError(f"version: {version!r} is not a model version id")
    return Path(settings.instance_path) / "evaluation" / version


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_result(settings: Settings, version: str, kind: str, report: dict,
                plots: dict[str, bytes] | None = None) -> Path:
    if kind not in KINDS:
        raise ValueError(f"Requested kind '{kind}' but it must be one of {list(KINDS)}")
    folder = evaluation_dir(settings, version)
    for name, png in (plots or {}).items():
        _atomic_write(folder / f"{name}.png", png)
    text = json.dumps(finite(report), indent=1, sort_keys=False, allow_nan=False)
    _atomic_write(folder / f"{kind}.json", text.encode())
    return folder


def load_results(settings: Settings, version: str) -> dict[str, Any]:
    """Every stored result of `version` ({kind: report}); NoEvaluationError if none."""
    folder = evaluation_dir(settings, version)
    found = {kind: json.loads((folder / f"{kind}.json").read_text(encoding="utf-8"))
             for kind in KINDS if (folder / f"{kind}.json").is_file()}
    if not found:
        raise NoEvaluationError(
            f"model version {version} has no evaluation results; run `forecast backtest`, "
            "`forecast sbc`, `forecast sensitivity` or `forecast models compare`")
    return found


def load_plot(settings: Settings, version: str, name: str) -> bytes:
    if name not in PLOTS:
        raise ValueError(f"Requested plot '{name}' but it must be one of {list(PLOTS)}")
    path = evaluation_dir(settings, version) / f"{name}.png"
    if not path.is_file():
        raise NoEvaluationError(f"model version {version} has no {name} plot yet")
    return path.read_bytes()


def _version_and_priors(settings: Settings, registry: Registry | None, version: str | None
                        ) -> tuple[ModelVersion | None, PriorSet]:
    """The version results belong to, and the priors it was fitted with (else the defaults)."""
    mv = None
    if registry is not None and version is not None:
        mv = registry.get(version) if version != "current" else registry.current_or_none()
    if mv is not None and mv.metadata.get("priors"):
        return mv, PriorSet.from_dict(mv.metadata["priors"])
    return mv, load_priors(settings.default_priors_path)


# -- backtest ------------------------------------------------------------------------------


def backtest_report(settings: Settings, database, codebook: Codebook, *,
                    registry: Registry | None = None, version: str | None = "current",
                    step_months: int = 24, horizon_months: int = 24, min_train: int = 200,
                    sampler: SamplerSettings | None = None, n_boot: int = 2000,
                    parameterization: dict | str | None = None,
                    save: bool = True, progress: Callable | None = None) -> dict:
    """Backtest the model (with the priors of `version`) and the baselines on the database's
    episodes; store the report and plots under the version (when there is one).

    `parameterization` None chooses centred/non-centred per fold from its data, as a served
    fit does; a fixed one ("noncentered") compiles the model once for every fold.
    """
    from forecasting.evaluation import backtest, calibration

    registry = registry or Registry(settings.registry_path)
    mv, priors = _version_and_priors(settings, registry, version)
    frame = modelled_episodes(database)
    spec = backtest.FoldSpec(step_months=step_months, horizon_months=horizon_months,
                             min_train=min_train)
    sampler = sampler or backtest.BACKTEST_SAMPLER
    forecasters = backtest.default_forecasters(codebook, priors, sampler, parameterization)
    table = backtest.run_backtest(frame, forecasters, spec, progress=progress)
    report = backtest.summarise_backtest(table, n_boot=n_boot)
    report.update({"version": mv.version if mv else None, "priors_hash": priors.content_hash,
                   "folds_spec": asdict(spec), "sampler": asdict(sampler),
                   "created_at": utc_now_iso(), "episodes_total": int(len(frame))})
    plots = {
        "reliability": calibration.plot_reliability(
            {name: report["forecasters"][name]["reliability"]
             for name in (backtest.MODEL, "climatology", "no_pooling")
             if name in report["forecasters"]}),
        "scores": calibration.plot_score_differences(report["comparisons"]),
        "pit": calibration.plot_pit({
            name: calibration.randomized_pit(
                table[[f"{name}_p{k}" for k in range(4)]].to_numpy(), table["level"].to_numpy())
            for name in (backtest.MODEL, "climatology") if f"{name}_p0" in table}),
    }
    if save and mv is not None:
        report["stored_in"] = str(save_result(settings, mv.version, "backtest", report, plots))
    return finite(report)


# -- simulation-based calibration ----------------------------------------------------------


def sbc_report(settings: Settings, codebook: Codebook, *, registry: Registry | None = None,
               version: str | None = "current", n_sims: int = 100, n_episodes: int = 600,
               n_jobs: int | None = None, sampler: SamplerSettings | None = None,
               thin_to: int = 99, parameterization: dict | str | None = "noncentered",
               seed: int = 0, truth_from: str = "prior", save: bool = True) -> dict:
    """SBC of the model with the priors of `version` (default priors if there is none).

    `truth_from="seed_like"` checks interval coverage on data from fixed seed-like parameters
    instead (stored as "sbc" too: one or the other, the last run wins)."""
    from forecasting.evaluation import sbc

    registry = registry or Registry(settings.registry_path)
    mv, priors = _version_and_priors(settings, registry, version)
    n_jobs = n_jobs or max(1, min(os.cpu_count() or 1, n_sims))
    report = sbc.run_sbc(codebook, priors, n_sims=n_sims, n_episodes=n_episodes,
                         sampler=sampler or sbc.SBC_SAMPLER, thin_to=thin_to, n_jobs=n_jobs,
                         parameterization=parameterization, seed=seed,
                         truth_from=truth_from)
    report.update({"version": mv.version if mv else None, "created_at": utc_now_iso()})
    report = finite(report)
    if save and mv is not None:
        report["stored_in"] = str(save_result(settings, mv.version, "sbc", report,
                                              {"sbc": sbc.plot_sbc(report)}))
    return report


# -- prior sensitivity ---------------------------------------------------------------------


def sensitivity_report(settings: Settings, registry: Registry, version: str = "current", *,
                       recompute: bool = False, save: bool = True) -> dict:
    """Power-scaling sensitivity of a stored version; computed once, then read from disk."""
    from forecasting.evaluation.sensitivity import REQUIRED as SENSITIVITY_GROUPS
    from forecasting.evaluation.sensitivity import compute_sensitivity

    mv = registry.get(version)
    path = evaluation_dir(settings, mv.version) / "sensitivity.json"
    if path.is_file() and not recompute:
        return json.loads(path.read_text(encoding="utf-8"))
    dt = None
    for groups in ((*SENSITIVITY_GROUPS, "prior"), SENSITIVITY_GROUPS):  # prior: where stored
        try:
            dt = registry.load_posterior(mv.version, groups=groups)
            break
        except KeyError:
            continue
    if dt is None:
        raise SensitivityUnavailableError(
            f"model version {mv.version} lacks a group power-scaling needs "
            f"({', '.join(SENSITIVITY_GROUPS)}): refit")
    report = compute_sensitivity(dt)
    report.update({"version": mv.version, "priors_hash": mv.metadata.get("priors_hash"),
                   "created_at": utc_now_iso()})
    report = finite(report)
    if save:
        save_result(settings, mv.version, "sensitivity", report)
    return report


# -- leave-one-trigger-out comparison ---------------------------------------------------------


def load_comparison(settings: Settings, version: str) -> dict:
    """The stored leave-one-trigger-out comparison of `version`; NoEvaluationError if none."""
    path = evaluation_dir(settings, version) / "comparison.json"
    if not path.is_file():
        raise NoEvaluationError(
            f"model version {version} has no leave-one-trigger-out comparison yet; run "
            f"`forecast models compare {version}`")
    return json.loads(path.read_text(encoding="utf-8"))


def comparison_report(settings: Settings, database, codebook: Codebook, *,
                      registry: Registry | None = None, version: str = "current",
                      variants: list[str] | None = None, recompute: bool = False,
                      max_refits: int | None = None, sampler: SamplerSettings | None = None,
                      save: bool = True, progress: Callable[[str], None] | None = None) -> dict:
    """Leave-one-trigger-out comparison of `version`'s model (its priors) with simpler
    variants, on the database's episodes; stored with the version, computed once.

    A stored comparison is returned as it is when it holds every requested variant (a
    subset is tabled again from its stored pointwise values, not refitted). Variants it
    lacks are fitted and added when the data, priors and settings are those it was made
    with; otherwise (or with `recompute`) every model is fitted again.
    """
    from forecasting.domain.cells import aggregate
    from forecasting.evaluation import loto

    registry = registry or Registry(settings.registry_path)
    mv = registry.get(version)
    stored = None
    path = evaluation_dir(settings, mv.version) / "comparison.json"
    if path.is_file() and not recompute:
        stored = json.loads(path.read_text(encoding="utf-8"))
    names = loto.resolve_variants(variants)
    if stored is not None and (variants is None or set(names) <= set(stored["models"])):
        if variants is None or set(names) == set(stored["models"]):
            return stored
        return finite({**stored, **loto.comparison_table(
            {name: stored["models"][name] for name in names},
            stored["settings"]["k_threshold"]), "models_compared": names})
    _, priors = _version_and_priors(settings, registry, mv.version)
    frame = modelled_episodes(database)
    sampler = sampler or loto.COMPARISON_SAMPLER
    max_refits = loto.MAX_REFITS if max_refits is None else max_refits
    done = None
    if stored is not None:
        # keep the stored models when they were made the same way; fit the missing ones
        same = (stored.get("data_hash") == aggregate(frame, codebook).fingerprint
                and stored.get("priors_hash") == priors.content_hash
                and stored.get("settings") == finite(loto.comparison_settings(
                    sampler, loto.K_THRESHOLD, max_refits, loto.LOO_DRAWS)))
        if same:
            done = stored["models"]
        names = list(dict.fromkeys([*stored["models_compared"], *names]))
    report = loto.compare_variants(frame, codebook, priors, names, sampler=sampler,
                                   max_refits=max_refits, progress=progress, done=done)
    report.update({"version": mv.version,
                   "data_matches_version": report["data_hash"] == mv.metadata.get("data_hash"),
                   "created_at": utc_now_iso()})
    report = finite(report)
    if save:
        report["stored_in"] = str(save_result(settings, mv.version, "comparison", report))
    return report
