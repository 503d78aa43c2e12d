"""True channel credit, attribution errors and attribution plots.

Sources of the expected numbers: hand-computed Shapley values of the logistic conversion game
(arithmetic in the test docstrings), the Shapley permutation definition (brute force over all
orders, an independent implementation), the simulator itself (expected conversions of all
prospects = observed conversions, up to binomial noise) and hand-computed distances.
"""

from __future__ import annotations

import io
import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from crm_models.data.synthetic import simulate
from crm_models.errors import DataError
from crm_models.evaluation.attribution import (
    attribution_errors,
    plot_budget,
    plot_roi,
    plot_shares_by_method,
    plot_transition_heatmap,
    shapley_logistic,
    true_channel_shares,
)

LN3, LN2 = math.log(3.0), math.log(2.0)
# base 0 -> p(∅) = 1/2; p({a}) = 3/4, p({b}) = 2/3, p({a, b}) = sigmoid(ln 6) = 6/7; c is inert
TRUTH = {"conversion_base": 0.0, "channel_conversion_effects": {"a": LN3, "b": LN2, "c": 0.0}}


def _touches(rows: list[tuple[int, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "ts": pd.to_datetime([r[1] for r in rows]),
            "channel": [r[2] for r in rows],
        }
    )


HAND_JOURNEYS = _touches(
    [
        (1, "2024-01-01", "a"),
        (1, "2024-01-05", "a"),
        (1, "2024-01-10", "b"),  # {a, b}
        (2, "2024-02-01", "b"),
        (2, "2024-02-03", "c"),  # {b, c}
        (3, "2024-03-01", "a"),  # {a}
        (4, "2024-04-01", "c"),
        (4, "2024-04-02", "b"),
        (4, "2024-04-03", "a"),  # {a, b, c}
    ]
)


def test_shapley_of_two_channels_by_hand():
    """S = {a, b}: v(a) = 3/4 - 1/2 = 1/4, v(b) = 2/3 - 1/2 = 1/6, v(ab) = 6/7 - 1/2 = 5/14.

    phi_a = 1/2 v(a) + 1/2 (v(ab) - v(b)) = 1/8 + 1/2 (5/14 - 1/6) = 1/8 + 2/21 = 37/168;
    phi_b = 1/2 v(b) + 1/2 (v(ab) - v(a)) = 1/12 + 1/2 (5/14 - 1/4) = 1/12 + 3/56 = 23/168.
    """
    np.testing.assert_allclose(shapley_logistic(0.0, [LN3, LN2]), [37 / 168, 23 / 168], rtol=1e-12)
    # an inert (effect 0) player gets 0 and leaves the others unchanged
    np.testing.assert_allclose(
        shapley_logistic(0.0, [LN3, LN2, 0.0]), [37 / 168, 23 / 168, 0.0], atol=1e-15
    )


def test_shapley_matches_the_permutation_definition():
    """Average marginal contribution over all 4! orders (brute force) = the subset formula."""
    base, e = -1.3, np.array([0.7, -0.2, 1.1, 0.4])

    def p(members: set[int]) -> float:
        return 1 / (1 + math.exp(-(base + sum(e[list(members)]))))

    phi = np.zeros(4)
    for order in itertools.permutations(range(4)):
        seen: set[int] = set()
        for player in order:
            phi[player] += p(seen | {player}) - p(seen)
            seen.add(player)
    phi /= math.factorial(4)
    np.testing.assert_allclose(shapley_logistic(base, e), phi, rtol=1e-12)
    assert shapley_logistic(base, e).sum() == pytest.approx(p({0, 1, 2, 3}) - p(set()))


def test_true_channel_shares_on_hand_journeys():
    """Per journey (in 1/168): {a,b}: a 37, b 23; {b,c}: b v(b) = 28, c 0; {a}: a v(a) = 42;
    {a,b,c}: a 37, b 23, c 0.  Totals a = 116/168, b = 74/168, c = 0; shares 58/95, 37/95, 0.
    Baseline p(∅) = 1/2 split equally: a = 1/4 + 1/2 + 1/6 = 11/12, b = 1/4 + 1/4 + 1/6 = 2/3,
    c = 1/4 + 1/6 = 5/12 (sum 2 = 4 prospects x 1/2).
    """
    t = true_channel_shares(HAND_JOURNEYS, TRUTH).set_index("channel")
    assert list(t.index) == ["a", "b", "c"]
    np.testing.assert_allclose(t["true_conversions"], [116 / 168, 74 / 168, 0.0], atol=1e-15)
    np.testing.assert_allclose(t["share"], [58 / 95, 37 / 95, 0.0], atol=1e-15)
    assert t.loc["c", "share"] == 0.0  # zero effect, zero credit
    np.testing.assert_allclose(t["baseline_conversions"], [11 / 12, 2 / 3, 5 / 12], rtol=1e-12)
    total = 190 / 168 + 2.0
    np.testing.assert_allclose(
        t["share_with_baseline"],
        [(116 / 168 + 11 / 12) / total, (74 / 168 + 2 / 3) / total, (5 / 12) / total],
        rtol=1e-12,
    )
    assert t["share"].sum() == pytest.approx(1.0)
    assert t["share_with_baseline"].sum() == pytest.approx(1.0)


def test_lookback_drops_old_touches():
    """With 3 days of lookback, prospect 1 keeps only its last touch (b): set {b} -> b 28/168;
    prospect 2 keeps {b, c} (2 days apart); 3 and 4 are unchanged. a = 42 + 37, b = 28 + 28 + 23.
    """
    t = true_channel_shares(HAND_JOURNEYS, TRUTH, lookback_days=3).set_index("channel")
    np.testing.assert_allclose(t["true_conversions"], [79 / 168, 79 / 168, 0.0], atol=1e-15)


def test_unknown_channel_and_missing_truth_are_data_errors():
    bad = pd.concat([HAND_JOURNEYS, _touches([(9, "2024-05-01", "tv")])], ignore_index=True)
    with pytest.raises(DataError, match=r"'tv'.*customer_id=9"):
        true_channel_shares(bad, TRUTH)
    with pytest.raises(DataError, match="conversion_base"):
        true_channel_shares(HAND_JOURNEYS, {"channel_conversion_effects": {"a": 1.0}})


def test_truth_expects_the_simulators_conversions():
    """Sum over all prospects of p(S) (incremental + baseline) = E[conversions]; the simulator
    drew exactly n_customers conversions, sd ~ sqrt(sum p(1-p)) ~ 40 here.
    """
    ds = simulate(2000, seed=11)
    t = true_channel_shares(ds.tables["touchpoints"], ds.ground_truth)
    expected = t["true_conversions"].sum() + t["baseline_conversions"].sum()
    assert expected == pytest.approx(2000, abs=4 * 45)
    effects = ds.ground_truth["channel_conversion_effects"]
    # credit = effect x reach: the rarest channel with the largest effect (referral, 0.9, 7% of
    # touches) still outranks the most frequent weak one (display, 0.05, 20%)
    s = t.set_index("channel")["share"]
    assert effects["referral"] > effects["display"] and s["referral"] > s["display"]


def test_attribution_errors_identical_disjoint_and_hand_values():
    truth = pd.DataFrame({"channel": ["x", "y", "z"], "share": [0.5, 0.3, 0.2]})
    methods = pd.DataFrame(
        {
            "method": ["same"] * 3 + ["disjoint"] + ["reversed"] * 3,
            "channel": ["x", "y", "z", "w", "x", "y", "z"],
            "share": [0.5, 0.3, 0.2, 1.0, 0.2, 0.3, 0.5],
        }
    )
    e = attribution_errors(methods, truth).set_index("method")
    assert e.loc["same", "tvd"] == pytest.approx(0.0, abs=1e-15)
    assert e.loc["same", "spearman"] == pytest.approx(1.0)
    assert e.loc["disjoint", "tvd"] == pytest.approx(1.0)
    # 0.5 * (|0.2-0.5| + 0 + |0.5-0.2|) = 0.3; ranks exactly reversed
    assert e.loc["reversed", "tvd"] == pytest.approx(0.3)
    assert e.loc["reversed", "spearman"] == pytest.approx(-1.0)
    assert e.loc["reversed", "max_abs_error"] == pytest.approx(0.3)
    # a dict of frames / Series gives the same numbers as the long frame
    as_dict = {m: g[["channel", "share"]] for m, g in methods.groupby("method")}
    as_dict["reversed"] = pd.Series([0.2, 0.3, 0.5], index=["x", "y", "z"])
    e2 = attribution_errors(as_dict, truth.set_index("channel")["share"]).set_index("method")
    pd.testing.assert_frame_equal(e.sort_index(), e2.sort_index())


def test_attribution_errors_rejects_zero_total():
    truth = {"x": 1.0}
    with pytest.raises(DataError, match="sum to"):
        attribution_errors({"m": {"x": 0.0}}, truth)


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def test_plots_render():
    shares = pd.DataFrame(
        {
            "method": ["last_touch"] * 3 + ["markov"] * 3,
            "channel": ["a", "b", "c"] * 2,
            "share": [0.5, 0.3, 0.2, 0.4, 0.4, 0.2],
            "share_lower": [0.45, 0.25, 0.15, 0.35, 0.36, 0.18],
            "share_upper": [0.55, 0.35, 0.25, 0.45, 0.44, 0.22],
        }
    )
    truth = true_channel_shares(HAND_JOURNEYS, TRUTH)
    fig = plot_shares_by_method(shares, truth=truth)
    assert len(fig.axes[0].patches) == 6  # 2 methods x 3 channels
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "c"]
    assert _png(fig)[:4] == b"\x89PNG"

    states = ["(start)", "a", "b", "(conversion)", "(null)"]
    tm = pd.DataFrame(0.0, index=states, columns=states)
    tm.loc["(start)", ["a", "b"]] = [0.6, 0.4]
    tm.loc["a", ["b", "(conversion)", "(null)"]] = [0.3, 0.2, 0.5]
    tm.loc["b", ["a", "(conversion)", "(null)"]] = [0.1, 0.3, 0.6]
    tm.loc["(conversion)", "(conversion)"] = tm.loc["(null)", "(null)"] = 1.0
    assert _png(plot_transition_heatmap(tm))[:4] == b"\x89PNG"

    roi = pd.DataFrame(
        {
            "method": ["m1", "m1", "m2", "m2"],
            "channel": ["a", "b", "a", "b"],
            "roas": [2.0, 0.5, 1.5, 0.0],
            "cpa": [10.0, 40.0, 12.0, np.inf],
            "marginal_roas": [1.4, 0.35, 1.05, 0.0],
        }
    )
    assert _png(plot_roi(roi))[:4] == b"\x89PNG"

    realloc = pd.DataFrame(
        {
            "channel": ["a", "b"],
            "current_spend": [50.0, 50.0],
            "proposed_spend": [80.0, 20.0],
            "expected_before": [10.0, 8.0],
            "expected_after": [13.0, 6.0],
            "change": [30.0, -30.0],
        }
    )
    fig = plot_budget(realloc)
    assert "18.0 -> 19.0" in fig.axes[0].get_title()
    assert _png(fig)[:4] == b"\x89PNG"
