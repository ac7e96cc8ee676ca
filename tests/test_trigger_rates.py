"""The trigger arrival model (forecasting.model.trigger_rates): numpy only, no sampler."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from forecasting.model.trigger_rates import (
    DAYS_PER_MONTH,
    GROUP,
    NoTriggersError,
    arrival_id,
    coded_triggers,
    fit_trigger_rates,
    time_weights,
)
from forecasting.settings import DEFAULT_DATA_DIR

START = pd.Timestamp("1990-01-01")


def triggers_frame(codebook, rates_per_year: dict[str, float], years: float = 30, seed: int = 0,
                   partners=("GBR", "CAN"), severity: int = 2) -> pd.DataFrame:
    """Episodes of triggers arriving as Poisson processes, one episode per (trigger, partner)."""
    rng = np.random.default_rng(seed)
    rows = []
    for kind, rate in rates_per_year.items():
        n = rng.poisson(rate * years)
        days = np.sort(rng.uniform(0, years * 365.25, n))
        for i, day in enumerate(days):
            date = (START + pd.Timedelta(days=float(day))).date().isoformat()
            for partner in partners:
                rows.append({"trigger_id": f"{kind}-{i}", "trigger_type": kind,
                             "trigger_date": date, "severity": severity, "alignment": 1,
                             "partner": partner, "intel_type": "humint", "level": 0})
    return pd.DataFrame(rows)


def _interval(draws, q=(0.05, 0.95)):
    return np.quantile(np.asarray(draws), q)


def test_rates_are_recovered_within_their_90_percent_intervals(codebook):
    truth = {"disclosure_incident": 2.0, "policy_divergence": 4.0, "legal_case": 1.0,
             "leader_rhetoric": 3.0, "surveillance_revelation": 0.5, "government_change": 1.5}
    frame = triggers_frame(codebook, truth, years=40, seed=3, partners=("GBR",))
    ds = fit_trigger_rates(frame, codebook, half_life_years=None, end=START + pd.DateOffset(years=40),
                           start=START, seed=1)
    covered = 0
    for kind, per_year in truth.items():
        lo, hi = _interval(ds["rate"].sel(trigger_type=kind) * 12)
        covered += lo <= per_year <= hi
    assert covered >= 5  # 90% intervals: one miss in six is allowed
    assert float(ds["rate"].sel(trigger_type="policy_divergence").mean()) > float(
        ds["rate"].sel(trigger_type="surveillance_revelation").mean())


def test_a_trigger_type_never_coded_borrows_a_rate_from_the_others(codebook):
    frame = triggers_frame(codebook, {"disclosure_incident": 2.0, "policy_divergence": 2.0,
                                      "legal_case": 2.0, "leader_rhetoric": 2.0,
                                      "surveillance_revelation": 2.0}, years=3, seed=4)
    ds = fit_trigger_rates(frame, codebook, half_life_years=None, start=START,
                           end=START + pd.DateOffset(years=3), seed=2)
    never = ds["rate"].sel(trigger_type="government_change") * 12
    others = ds["rate"].drop_sel(trigger_type="government_change").mean("trigger_type") * 12
    assert int(ds["trigger_count"].sel(trigger_type="government_change")) == 0
    # three years without one: alone, a zero count's Jeffreys mean is 0.5 / 3 = 0.17 a year;
    # pooled with five types seen about twice a year, it is pulled up, but stays below them
    assert 0.3 < float(never.mean()) < float(others.mean())
    assert float(never.quantile(0.95)) > 1.0  # and honest about not knowing


def test_exposure_follows_how_often_a_partner_is_coded_pooled_within_its_bloc(codebook):
    frame = triggers_frame(codebook, {"disclosure_incident": 3.0}, seed=5,
                           partners=("GBR",))  # GBR on every trigger
    some = frame.iloc[::3].assign(partner="CAN")  # CAN on a third of them
    ds = fit_trigger_rates(pd.concat([frame, some]), codebook, half_life_years=None, seed=3)
    q = ds["exposure"].mean("arrival_draw")
    assert float(q.sel(partner="GBR")) > 0.9
    assert 0.2 < float(q.sel(partner="CAN")) < 0.45
    # never coded: small but not zero, more uncertain than a partner seen on every trigger
    assert 0 < float(q.sel(partner="NZL")) < float(q.sel(partner="CAN"))
    cv = ds["exposure"].std("arrival_draw") / q
    assert float(cv.sel(partner="NZL")) > 3 * float(cv.sel(partner="GBR"))
    # a bloc where no partner was ever coded: lower still than a coded bloc's unseen partner
    assert float(q.sel(partner="JPN")) < float(q.sel(partner="NZL"))


def test_exposure_by_trigger_type_follows_the_types_a_partner_is_coded_on(codebook):
    legal = triggers_frame(codebook, {"legal_case": 3.0}, seed=8, partners=("GBR", "CAN"))
    rhetoric = triggers_frame(codebook, {"leader_rhetoric": 3.0}, seed=9, partners=("GBR",))
    ds = fit_trigger_rates(pd.concat([legal, rhetoric]), codebook, half_life_years=None,
                           seed=4, exposure_by_type=True)
    q = ds["exposure_by_type"].mean("arrival_draw")
    can = q.sel(partner="CAN")
    # CAN was coded on every legal case and no leader's rhetoric: by type tells them apart
    assert float(can.sel(trigger_type="legal_case")) > 0.8
    assert float(can.sel(trigger_type="leader_rhetoric")) < 0.2
    assert float(q.sel(partner="GBR").min()) > 0.8  # GBR on every trigger of both types
    # a type never coded: the partner's overall exposure, not a confident zero or one
    overall = float(ds["exposure"].sel(partner="CAN").mean())
    assert float(can.sel(trigger_type="government_change")) == pytest.approx(overall, abs=0.1)
    assert "exposure_by_type" not in fit_trigger_rates(legal, codebook, seed=4,
                                                       exposure_by_type=False)


def test_the_arrival_id_names_the_settings_and_the_triggers(codebook):
    frame = triggers_frame(codebook, {"legal_case": 2.0, "leader_rhetoric": 1.0}, seed=10)
    ids = {arrival_id(fit_trigger_rates(f, codebook, half_life_years=h, draws=50))
           for f, h in [(frame, 3.0), (frame.sample(frac=1, random_state=2), 3.0)]}
    assert len(ids) == 1  # the same triggers in another order: the same model
    other_settings = arrival_id(fit_trigger_rates(frame, codebook, half_life_years=None,
                                                  draws=50))
    other_data = arrival_id(fit_trigger_rates(frame.iloc[2:], codebook, half_life_years=3.0,
                                              draws=50))
    assert len(ids | {other_settings, other_data}) == 3
    # a model stored before ids existed still gets one, from what it kept
    legacy = fit_trigger_rates(frame, codebook, draws=50)
    del legacy.attrs["arrival_id"]
    assert len(arrival_id(legacy)) == 12 and arrival_id(legacy) not in ids


def test_a_half_life_weighs_recent_triggers_more(codebook):
    calm = triggers_frame(codebook, {"disclosure_incident": 0.5}, years=20, seed=6)
    busy = triggers_frame(codebook, {"disclosure_incident": 6.0}, years=5, seed=7)
    busy["trigger_date"] = (pd.to_datetime(busy["trigger_date"]) + pd.DateOffset(years=20)
                            ).dt.date.astype(str)
    busy["trigger_id"] = "late-" + busy["trigger_id"]
    frame = pd.concat([calm, busy])
    end = START + pd.DateOffset(years=25)
    flat = fit_trigger_rates(frame, codebook, half_life_years=None, start=START, end=end)
    recent = fit_trigger_rates(frame, codebook, half_life_years=3.0, start=START, end=end)
    rate = "rate"
    assert float(recent[rate].sel(trigger_type="disclosure_incident").mean()) > 1.5 * float(
        flat[rate].sel(trigger_type="disclosure_incident").mean())
    assert recent.attrs["half_life_years"] == 3.0 and flat.attrs["half_life_years"] == -1.0
    # the weighted window is shorter than the calendar one
    assert recent.attrs["exposure_months"] < flat.attrs["exposure_months"]


def test_weights_halve_every_half_life():
    frame = pd.DataFrame({"trigger_id": ["a", "b"], "trigger_type": "legal_case",
                          "trigger_date": ["2000-01-01", "2010-01-01"], "severity": 1,
                          "alignment": 1, "partner": "GBR"})
    triggers = coded_triggers(frame)
    weights, months = time_weights(triggers, 10.0)
    assert weights[1] == 1.0 and weights[0] == pytest.approx(0.5, abs=0.001)
    full = (triggers.end - triggers.start).days / DAYS_PER_MONTH
    assert months == pytest.approx(120 / np.log(2) * 0.5, rel=0.01) and months < full


def test_the_seed_triggers_fit_in_a_fraction_of_a_second(codebook):
    episodes = pd.read_csv(DEFAULT_DATA_DIR / "episodes.csv")
    fit_trigger_rates(episodes, codebook)  # warm imports
    t0 = time.perf_counter()
    ds = fit_trigger_rates(episodes, codebook, half_life_years=None)
    seconds = time.perf_counter() - t0
    n = episodes["trigger_id"].nunique()
    assert ds.attrs["coded_triggers"] == n
    assert float(ds["trigger_count"].sum()) == pytest.approx(n)
    assert float(ds["severity_count"].sum()) == pytest.approx(n)
    # every coded trigger touches at least one partner: the partner counts add up to more
    assert float(ds["partner_count"].sum()) >= n
    # shares are distributions; rates positive
    np.testing.assert_allclose(ds["severity_share"].sum("severity"), 1.0, rtol=1e-9)
    assert (ds["rate"] > 0).all()
    assert seconds < 1.5  # measured 0.13-0.15 s on a loaded 2-core machine (0.5 s budget)


def test_no_triggers_is_a_clear_error(codebook):
    with pytest.raises(NoTriggersError, match="no coded triggers"):
        fit_trigger_rates(pd.DataFrame(columns=["trigger_id", "trigger_type", "trigger_date",
                                                "severity", "alignment", "partner"]), codebook)


def test_every_fit_stores_the_arrival_model_with_its_version(fitted_version, small_fit):
    from forecasting.registry import Registry

    assert GROUP in small_fit.idata.children
    stored = Registry(fitted_version.path.parent).load_posterior(fitted_version.version,
                                                                 groups=[GROUP])[GROUP]
    assert set(stored.data_vars) >= {"rate", "severity_share", "alignment_share", "exposure",
                                     "exposure_by_type"}
    np.testing.assert_allclose(stored["rate"].values,
                               small_fit.idata[GROUP]["rate"].values, rtol=1e-6)


def test_the_rate_backtest_prefers_recent_weights_when_the_rate_has_risen(codebook):
    from forecasting.evaluation.trigger_backtest import (
        BASELINE,
        run_rate_backtest,
        summarise_rate_backtest,
    )

    calm = triggers_frame(codebook, {"disclosure_incident": 0.5, "legal_case": 0.5},
                          years=20, seed=8)
    busy = triggers_frame(codebook, {"disclosure_incident": 4.0, "legal_case": 4.0},
                          years=8, seed=9)
    busy["trigger_date"] = (pd.to_datetime(busy["trigger_date"]) + pd.DateOffset(years=20)
                            ).dt.date.astype(str)
    busy["trigger_id"] = "late-" + busy["trigger_id"]
    frame = pd.concat([calm, busy], ignore_index=True)
    table = run_rate_backtest(frame, codebook, step_months=18, horizons=(12,),
                              min_triggers=10, half_lives=(None, 2.0), draws=400)
    # every origin scores every type, the total, a window without triggers included
    assert set(table["forecaster"]) == {"equal_weights", "half_life_2y", BASELINE}
    per_origin = table.groupby(["origin", "forecaster"]).size()
    assert (per_origin == len(codebook.trigger_type_codes) + 1).all()
    assert (table.loc[table["trigger_type"] == "government_change", "observed"] == 0).all()
    report = summarise_rate_backtest(table, n_boot=500)
    assert report["chosen"] == "half_life_2y"
    scores = report["horizons"]["12"]["forecasters"]
    assert scores["half_life_2y"]["log_total"] < scores["equal_weights"]["log_total"]
    assert scores["half_life_2y"]["log_vs_baseline"]["hi"] < 0


def test_the_rate_backtest_refuses_too_few_triggers(codebook):
    from forecasting.evaluation.trigger_backtest import run_rate_backtest

    frame = triggers_frame(codebook, {"legal_case": 0.5}, years=4, seed=10)
    with pytest.raises(ValueError, match="no backtest origins.*lower --min-triggers"):
        run_rate_backtest(frame, codebook, min_triggers=50)


def test_the_exposure_backtest_prefers_exposure_by_type_when_partners_follow_types(codebook):
    from forecasting.evaluation.trigger_backtest import (
        run_exposure_backtest,
        summarise_exposure_backtest,
    )

    # CAN is coded on every legal case and never on leaders' rhetoric; GBR on everything
    legal = triggers_frame(codebook, {"legal_case": 1.5}, years=20, seed=11,
                           partners=("GBR", "CAN"))
    rhetoric = triggers_frame(codebook, {"leader_rhetoric": 1.5}, years=20, seed=12,
                              partners=("GBR",))
    table = run_exposure_backtest(pd.concat([legal, rhetoric]), codebook, min_triggers=10,
                                  half_life=None, draws=400)
    # every later trigger is scored once, against every partner of the codebook
    scored = table.groupby("trigger_id")["partner"].nunique()
    assert (scored == len(codebook.partner_codes)).all() and scored.index.is_unique
    assert set(table.loc[table["partner"] == "GBR", "observed"]) == {1}
    report = summarise_exposure_backtest(table, n_boot=500)
    assert report["log_by_type_minus_by_partner"]["hi"] < 0
    assert (report["forecasters"]["by_partner_and_type"]["brier"]
            < report["forecasters"]["by_partner"]["brier"])
