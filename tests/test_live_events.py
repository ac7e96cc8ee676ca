"""Forecasts for a coded trigger condition on the reactions coded so far."""

import numpy as np
import pytest
from scipy import integrate
from scipy.special import expit

from forecasting.serving.live_events import CodedReactions, conditional_level_probabilities

CUT = np.array([[0.5], [1.5], [2.5]])  # one draw


def _p(level, eta):
    cdf = np.r_[0.0, expit(CUT[:, 0] - eta), 1.0]
    return cdf[level + 1] - cdf[level]


def _norm(x, sd):
    return np.exp(-0.5 * (x / sd) ** 2) / (sd * np.sqrt(2 * np.pi))


def test_conditioning_equals_direct_integration_for_a_partner_not_yet_coded():
    """Two partners coded (one restricted twice, one not): P(any) for a third partner is the
    ratio of two double integrals over u (and each coded partner's v), done here by scipy."""
    s_u, s_v = 1.2, 0.8
    coded = CodedReactions(reaction=np.array([0, 0, 1]), eta=np.array([[0.3], [-0.2], [0.1]]),
                           level=np.array([2, 3, 0]))
    query_eta = 0.4

    def partner_likelihood(u, rows):
        def integrand(v):
            return _norm(v, s_v) * np.prod([_p(coded.level[i], coded.eta[i, 0] + u + v)
                                            for i in rows])
        return integrate.quad(integrand, -8 * s_v, 8 * s_v)[0]

    def weight(u):
        return _norm(u, s_u) * partner_likelihood(u, [0, 1]) * partner_likelihood(u, [2])

    def p_any_fresh_v(u):
        return integrate.quad(lambda v: _norm(v, s_v) * (1 - _p(0, query_eta + u + v)),
                              -8 * s_v, 8 * s_v)[0]

    numerator = integrate.quad(lambda u: weight(u) * p_any_fresh_v(u), -8 * s_u, 8 * s_u)[0]
    denominator = integrate.quad(weight, -8 * s_u, 8 * s_u)[0]
    probs = conditional_level_probabilities(np.array([[query_eta]]), CUT, np.array([s_u]),
                                            np.array([s_v]), coded, reaction=None)
    assert probs.shape == (1, 4, 1)
    assert probs[0, :, 0].sum() == pytest.approx(1.0)
    assert 1 - probs[0, 0, 0] == pytest.approx(numerator / denominator, abs=2e-3)


def test_a_partner_already_coded_conditions_on_its_own_reaction_too():
    s_u, s_v = 1.0, 1.0
    coded = CodedReactions(reaction=np.array([0, 0]), eta=np.array([[0.0], [0.0]]),
                           level=np.array([3, 3]))
    own = conditional_level_probabilities(np.array([[0.0]]), CUT, np.array([s_u]),
                                          np.array([s_v]), coded, reaction=0)
    other = conditional_level_probabilities(np.array([[0.0]]), CUT, np.array([s_u]),
                                            np.array([s_v]), coded, reaction=None)
    nothing = conditional_level_probabilities(
        np.array([[0.0]]), CUT, np.array([s_u]), np.array([s_v]),
        CodedReactions(np.zeros(0, int), np.zeros((0, 1)), np.zeros(0, int)), reaction=None)
    # its own suspensions say more about the same partner than about another one
    assert 1 - own[0, 0, 0] > 1 - other[0, 0, 0] > 1 - nothing[0, 0, 0]


def test_without_an_event_effect_other_partners_reactions_say_nothing():
    coded = CodedReactions(reaction=np.array([0, 0]), eta=np.array([[0.0], [0.0]]),
                           level=np.array([3, 3]))
    empty = CodedReactions(np.zeros(0, int), np.zeros((0, 1)), np.zeros(0, int))
    args = (np.array([[0.2]]), CUT, np.array([1e-9]), np.array([0.7]))
    after = conditional_level_probabilities(*args, coded, reaction=None)
    before = conditional_level_probabilities(*args, empty, reaction=None)
    np.testing.assert_allclose(after, before, atol=1e-9)


# --- the live grid: every cell after a coded trigger, one quadrature per shared conditioning ---
TRIGGER_EPISODES = ({"partner": "ISR", "intel_type": "sigint", "level": 2},
                    {"partner": "ISR", "intel_type": "sources", "level": 3},
                    {"partner": "GBR", "intel_type": "humint", "level": 0})


@pytest.fixture(scope="module")
def live_grid(fitted_engine):
    from forecasting.serving.forecasts import CodedTrigger, Scenario

    trigger = CodedTrigger("2017-oval-office-disclosure", Scenario("disclosure_incident", 3, 1),
                           TRIGGER_EPISODES)
    return trigger, fitted_engine.conditioned_grid(trigger, sort="partner")


def test_the_live_grid_serves_the_per_cell_live_answers_numbers(fitted_engine, live_grid):
    trigger, grid = live_grid
    cells = {(f["partner"], f["intel_type"]): f for f in grid["forecasts"]}
    assert len(cells) == len(fitted_engine.partners) * len(fitted_engine.intel_types)
    # coded cells (their own episode left out), a coded partner's other cells, partners not
    # coded (fresh reactions): every kind of conditioning the grid groups cells by
    for partner in ("ISR", "GBR", "SAU"):
        for intel_type in fitted_engine.intel_types:
            one = fitted_engine.conditioned(partner, intel_type, trigger)
            cell = cells[(partner, intel_type)]
            assert cell["any_restriction"] == one["any_restriction"], (partner, intel_type)
            assert cell["levels"] == one["levels"]
            assert cell["observed_level"] == one["observed_level"]
            assert cell["scenario"] == one["scenario"] == trigger.scenario.as_dict()
    assert grid["draws_used"] == one["draws_used"]
    assert [(e["partner"], e["intel_type"]) for e in grid["conditioned_on"]] == [
        (e["partner"], e["intel_type"]) for e in TRIGGER_EPISODES]


def test_the_live_grid_moves_the_coded_partners_cells_most(fitted_engine, live_grid):
    """ISR restricted heavily: its uncoded cells rise above the same cells for a new trigger
    far more than another partner's do (its own reaction effect is informed)."""
    _, grid = live_grid
    live = {(f["partner"], f["intel_type"]): f["any_restriction"]["mean"]
            for f in grid["forecasts"]}
    new = {(f["partner"], f["intel_type"]): f["any_restriction"]["mean"]
           for f in fitted_engine.grid({"trigger_type": "disclosure_incident", "severity": 3,
                                        "alignment": 1})}
    assert live[("ISR", "humint")] - new[("ISR", "humint")] > \
        live[("SAU", "humint")] - new[("SAU", "humint")] > 0
