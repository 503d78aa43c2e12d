"""CLV metrics on hand-computed cases and the Fader-Hardie diagnostics against closed forms.

Metric checks are worked by hand (Gini of perfect/reversed/partial rankings, MAE, RMSE, aggregate
error) or are invariants (decile sums equal totals, tie handling does not depend on row order,
compare_models picks the right winner). The Fader-Hardie functions are checked with the NBD
purchase model (Poisson purchases, Gamma(r, alpha) rates), where P(X(t) = n) is negative binomial,
E[X(t)] = r t / alpha and E[X(t) | x in (0, T]] = (r + x) t / (alpha + T): on the CDNOW sample
(Fader, Hardie & Lee 2005 design: 2,357 customers, calibration to 1997-09-30, holdout to
1998-06-30, 2,457 / 1,882 repeat purchases) and on data simulated from the NBD itself.
"""

from __future__ import annotations

import io
import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy.special import gammaln
from scipy.stats import nbinom, spearmanr

from crm_models.data.cdnow import load_cdnow
from crm_models.errors import ConfigError, DataError
from crm_models.evaluation import (
    clv_metrics,
    compare_models,
    conditional_expectations_table,
    decile_table,
    frequency_histogram_table,
    frequency_recency_matrix,
    lorenz_curve,
    normalized_gini,
    plot_conditional_expectations,
    plot_deciles,
    plot_frequency_histogram,
    plot_frequency_recency_matrix,
    plot_lorenz,
    plot_tracking_cumulative,
    plot_tracking_incremental,
    tracking_table,
)
from crm_models.features import btyd_summary

CAL_END, OBS_END = "1997-09-30", "1998-06-30"


class NBD:
    """Poisson purchases with Gamma(shape r, rate alpha) distributed rates (no dropout)."""

    def __init__(self, r: float, alpha: float) -> None:
        self.r, self.alpha = r, alpha

    def prob_n_purchases(self, n, t):
        n = np.asarray(n, dtype=float)
        r, a = self.r, self.alpha
        return np.exp(
            gammaln(r + n)
            - gammaln(r)
            - gammaln(n + 1)
            + r * np.log(a / (a + t))
            + n * np.log(t / (a + t))
        )

    def expected_purchases(self, t):
        return self.r * np.asarray(t, dtype=float) / self.alpha

    def predict_purchases(self, summary, t):
        x, big_t = summary["frequency"].to_numpy(float), summary["T"].to_numpy(float)
        return (self.r + x) * np.asarray(t, dtype=float) / (self.alpha + big_t)

    def prob_alive(self, summary):
        return np.ones(len(summary))


# Fitted by maximum likelihood on the CDNOW sample would be close to r = 0.385, alpha = 12.07 /
# week on the master file (Fader-Hardie); any values serve the invariants below.
CDNOW_NBD = NBD(0.385, 12.07)


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return load_cdnow(sample=True)


@pytest.fixture(scope="module")
def cdnow_summary(cdnow: pd.DataFrame) -> pd.DataFrame:
    return btyd_summary(cdnow, CAL_END, OBS_END, time_unit="W")


@pytest.fixture(scope="module")
def cdnow_tracking(cdnow: pd.DataFrame) -> pd.DataFrame:
    return tracking_table(CDNOW_NBD, cdnow, CAL_END, OBS_END, time_unit="W")


def kaggle_gini(actual, predicted) -> float:
    """The textbook (Kaggle) Gini, valid without ties: sum of cumulative shares, descending."""
    a = np.asarray(actual, dtype=float)[np.argsort(-np.asarray(predicted), kind="stable")]
    n = len(a)
    return np.cumsum(a).sum() / a.sum() / n - (n + 1) / (2 * n)


def render(fig: plt.Figure) -> int:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getbuffer().nbytes


# --- Gini and the Lorenz curve -----------------------------------------------------------------


def test_gini_is_one_for_the_perfect_ranking_and_minus_one_reversed() -> None:
    actual = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    assert normalized_gini(actual, actual) == pytest.approx(1.0)
    assert normalized_gini(actual, np.log(actual) + 5) == pytest.approx(1.0)  # only ranks count
    assert normalized_gini(actual, -actual) == pytest.approx(-1.0)
    assert normalized_gini(actual, np.full(5, 3.0)) == pytest.approx(0.0, abs=1e-12)


def test_gini_matches_a_hand_computed_partial_ranking() -> None:
    # Ranked by prediction: a = 0, 3, 6, 1 -> cumulative shares .0 .3 .9 1.0, gini -0.075;
    # perfect order 6, 3, 1, 0 -> .6 .9 1 1, gini 0.25; normalized -0.075 / 0.25 = -0.3.
    actual, predicted = [0.0, 1.0, 3.0, 6.0], [4.0, 1.0, 3.0, 2.0]
    assert kaggle_gini(actual, predicted) == pytest.approx(-0.075)
    assert normalized_gini(actual, predicted) == pytest.approx(-0.3)


def test_gini_averages_over_orders_of_tied_predictions() -> None:
    actual = np.array([0.0, 10.0, 0.0, 10.0, 5.0, 1.0])
    predicted = np.array([1.0, 1.0, 0.0, 0.0, 2.0, 1.0])
    # Brute force: the mean of the no-tie Gini over every order of the tied customers.
    ratios = []
    for perm in itertools.permutations(range(6)):
        p = predicted[list(perm)]
        keys = np.lexsort((np.arange(6), -p))  # ties in the order of this permutation
        rank = np.empty(6)
        rank[keys] = -np.arange(6)
        ratios.append(kaggle_gini(actual[list(perm)], rank))
    expected = np.mean(ratios) / kaggle_gini(actual, actual)
    assert normalized_gini(actual, predicted) == pytest.approx(expected)
    shuffle = np.random.default_rng(0).permutation(6)
    assert normalized_gini(actual[shuffle], predicted[shuffle]) == pytest.approx(expected)


def test_gini_is_nan_without_a_ranking_to_get_right() -> None:
    assert np.isnan(normalized_gini([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]))
    assert np.isnan(normalized_gini([0.0, 0.0], [1.0, 2.0]))


def test_lorenz_curve_runs_from_origin_to_one_below_the_perfect_curve() -> None:
    rng = np.random.default_rng(1)
    actual = rng.gamma(0.5, 100.0, 500) * (rng.random(500) < 0.6)
    predicted = actual + rng.normal(0, 50, 500)
    curve = lorenz_curve(actual, predicted)
    assert len(curve) == 501
    assert curve.iloc[0].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(curve.iloc[-1].to_numpy(), 1.0)
    assert (np.diff(curve["share_actual"]) >= -1e-15).all()
    assert (curve["share_actual"] <= curve["share_actual_perfect"] + 1e-12).all()
    assert curve.attrs["normalized_gini"] == pytest.approx(normalized_gini(actual, predicted))
    assert 0.0 < curve.attrs["normalized_gini"] < 1.0
    assert curve.attrs["normalized_gini"] == pytest.approx(
        kaggle_gini(actual, predicted) / kaggle_gini(actual, actual)
    )


# --- error metrics ---------------------------------------------------------------------------


def test_clv_metrics_by_hand() -> None:
    actual, predicted = [0.0, 2.0, 4.0, 10.0], [1.0, 2.0, 6.0, 7.0]
    # errors 1, 0, 2, -3: MAE 6/4, RMSE sqrt(14/4); sums 16 and 16; same ranking
    m = clv_metrics(actual, predicted)
    assert m == pytest.approx(
        {
            "mae": 1.5,
            "rmse": np.sqrt(3.5),
            "normalized_gini": 1.0,
            "spearman": 1.0,
            "aggregate_error": 0.0,
            "mean_actual": 4.0,
            "mean_predicted": 4.0,
            "n": 4.0,
        }
    )
    assert clv_metrics(actual, 1.5 * np.array(predicted))["aggregate_error"] == pytest.approx(0.5)


def test_spearman_is_scipys_and_nan_for_a_constant_prediction() -> None:
    rng = np.random.default_rng(2)
    a, p = rng.gamma(1.0, 10.0, 200), rng.gamma(1.0, 10.0, 200)
    assert clv_metrics(a, p)["spearman"] == pytest.approx(spearmanr(a, p).statistic)
    assert np.isnan(clv_metrics(a, np.ones(200))["spearman"])


def test_series_are_aligned_by_customer_id() -> None:
    actual = pd.Series([0.0, 2.0, 4.0, 10.0], index=["a", "b", "c", "d"])
    predicted = pd.Series([7.0, 6.0, 2.0, 1.0], index=["d", "c", "b", "a"])
    assert clv_metrics(actual, predicted)["mae"] == pytest.approx(1.5)
    with pytest.raises(DataError, match="missing 'd' and extra 'e'"):
        clv_metrics(actual, predicted.rename({"d": "e"}))


def test_bad_inputs_raise_data_errors() -> None:
    with pytest.raises(DataError, match="3 values but actual has 2"):
        clv_metrics([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="NaN"):
        clv_metrics([1.0, 2.0], [1.0, np.nan])
    with pytest.raises(DataError, match="no customers"):
        clv_metrics([], [])
    with pytest.raises(DataError, match="positive total"):
        lorenz_curve([0.0, 0.0], [1.0, 2.0])
    with pytest.raises(ConfigError):
        decile_table([1.0, 2.0], [1.0, 2.0], n_bins=0)


# --- decile table ----------------------------------------------------------------------------


def test_decile_sums_equal_totals_and_bins_are_equal_and_ordered() -> None:
    rng = np.random.default_rng(3)
    actual, predicted = rng.gamma(1.0, 10.0, 1000), rng.gamma(1.0, 10.0, 1000)
    t = decile_table(actual, predicted)
    assert t.index.tolist() == list(range(1, 11))
    assert (t["n"] == 100).all()
    assert t["sum_actual"].sum() == pytest.approx(actual.sum())
    assert t["sum_predicted"].sum() == pytest.approx(predicted.sum())
    assert t["share_actual"].sum() == pytest.approx(1.0)
    assert (np.diff(t["mean_predicted"]) > 0).all()
    assert (t["predicted_max"].to_numpy()[:-1] < t["predicted_min"].to_numpy()[1:]).all()


def test_decile_table_keeps_ties_together_whatever_the_row_order() -> None:
    rng = np.random.default_rng(4)
    predicted = np.where(rng.random(1000) < 0.6, 0.0, rng.gamma(1.0, 10.0, 1000))
    actual = rng.gamma(1.0, 10.0, 1000)
    t = decile_table(actual, predicted)
    zeros = int((predicted == 0).sum())
    # the zero run's middle customer is in the 4th decile of 1,000 when ~600 are zero
    assert t.loc[t["predicted_max"] == 0, "n"].tolist() == [zeros]
    assert t["n"].sum() == 1000
    assert t["sum_actual"].sum() == pytest.approx(actual.sum())
    perm = rng.permutation(1000)
    pd.testing.assert_frame_equal(decile_table(actual[perm], predicted[perm]), t)


# --- compare_models --------------------------------------------------------------------------


def test_compare_models_marks_the_right_winner_per_metric() -> None:
    actual = np.array([0.0, 0.0, 10.0, 10.0, 3.0])
    predictions = {
        "unbiased": np.array([2.0, 2.0, 8.0, 8.0, 3.0]),  # aggregate error 0, MAE 1.6
        "close_low": np.array([0.0, 0.0, 9.0, 9.0, 3.0]),  # MAE 0.4, aggregate -2/23
        "high": np.array([0.0, 0.0, 12.0, 12.0, 3.0]),  # MAE 0.8, aggregate +4/23
        "reversed": -actual,
    }
    t = compare_models(actual, predictions)
    assert t.index.tolist() == list(predictions)
    assert t.loc["unbiased", "aggregate_error"] == pytest.approx(0.0)
    assert t.loc["close_low", "aggregate_error"] == pytest.approx(-2 / 23)
    # lowest |aggregate error| wins, not the most negative
    assert t.attrs["best"] == {
        "mae": "close_low",
        "rmse": "close_low",
        "normalized_gini": "unbiased",  # three models share the perfect ranking: first one
        "spearman": "unbiased",
        "aggregate_error": "unbiased",
    }
    assert t.loc["unbiased", "best"] == "normalized_gini, spearman, aggregate_error"
    assert t.loc["close_low", "best"] == "mae, rmse, normalized_gini, spearman"
    assert t.loc["high", "best"] == "normalized_gini, spearman"  # same ranking: tied winners
    assert t.loc["reversed", "best"] == ""
    assert t.loc["reversed", "normalized_gini"] == pytest.approx(-1.0)
    assert t.loc["close_low", "mae"] == pytest.approx(0.4)


# --- frequency histogram (FH 2005 Figure 2) --------------------------------------------------


def test_frequency_histogram_matches_per_customer_negative_binomial(cdnow_summary) -> None:
    s = cdnow_summary
    t = frequency_histogram_table(CDNOW_NBD, s, max_frequency=7)
    assert t.index.tolist() == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert t["expected"].sum() == pytest.approx(len(s))
    actual = s["frequency"].clip(upper=7).value_counts().sort_index()
    assert t["actual"].tolist() == actual.tolist()
    assert t["actual"].sum() == 2357
    # scipy's negative binomial per customer (no grouping by T): P(X(T)=k) = nbinom(k; r, a/(a+T))
    p = CDNOW_NBD.alpha / (CDNOW_NBD.alpha + s["T"].to_numpy())
    direct = np.array([nbinom.pmf(k, CDNOW_NBD.r, p).sum() for k in range(7)])
    np.testing.assert_allclose(t["expected"].to_numpy()[:7], direct, rtol=1e-9)
    assert t["expected"].iloc[7] == pytest.approx(nbinom.sf(6, CDNOW_NBD.r, p).sum())


# --- conditional expectations (FH 2005 Figure 4) ---------------------------------------------


def test_conditional_expectations_are_bin_means_of_actual_and_predicted(cdnow_summary) -> None:
    s = cdnow_summary
    t = conditional_expectations_table(CDNOW_NBD, s, max_frequency=7)
    assert t.index.tolist() == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert t["n"].sum() == 2357
    bins = s["frequency"].clip(upper=7)
    assert t["actual"].tolist() == pytest.approx(
        s.groupby(bins)["frequency_holdout"].mean().tolist()
    )
    assert (t["n"] * t["actual"]).sum() == pytest.approx(1882)
    pred = (CDNOW_NBD.r + s["frequency"]) * 39.0 / (CDNOW_NBD.alpha + s["T"])
    assert t["predicted"].tolist() == pytest.approx(pred.groupby(bins).mean().tolist())
    # empty bins stay, with NaN means
    wide = conditional_expectations_table(CDNOW_NBD, s.iloc[:50], max_frequency=30)
    assert len(wide) == 31 and wide["n"].sum() == 50 and wide["actual"].isna().any()


def test_conditional_expectations_need_the_holdout_columns(cdnow_summary) -> None:
    with pytest.raises(DataError, match="frequency_holdout"):
        conditional_expectations_table(CDNOW_NBD, cdnow_summary.drop(columns="frequency_holdout"))


# --- tracking (FH 2005 Figures 1 and 3) ------------------------------------------------------


def test_tracking_actual_totals_equal_the_summary_on_cdnow(cdnow_tracking, cdnow_summary) -> None:
    t, s = cdnow_tracking, cdnow_summary
    assert len(t) == 78 and (t["days"] == 7).all()
    assert t["period_start"].iloc[0] == pd.Timestamp("1997-01-01")
    assert t["period_end"].iloc[-1] == pd.Timestamp(OBS_END)
    assert t.attrs["calibration_periods"] == 39.0
    assert t["in_calibration"].sum() == 39
    assert t.loc[t["in_calibration"], "actual"].sum() == s["frequency"].sum() == 2457
    assert t.loc[~t["in_calibration"], "actual"].sum() == s["frequency_holdout"].sum() == 1882
    assert t["actual_cumulative"].iloc[-1] == 2457 + 1882
    # first purchases are spread over the first 12 weeks, so the first week has few repeats
    assert t["actual"].iloc[0] < t["actual"].iloc[11]


def test_tracking_expected_equals_the_sum_of_expected_purchases(
    cdnow_tracking, cdnow_summary
) -> None:
    t, s = cdnow_tracking, cdnow_summary
    at_cal = CDNOW_NBD.expected_purchases(s["T"]).sum()
    at_end = CDNOW_NBD.expected_purchases(s["T"] + s["duration_holdout"]).sum()
    assert t.loc[39, "expected_cumulative"] == pytest.approx(at_cal, rel=1e-12)
    assert t["expected_cumulative"].iloc[-1] == pytest.approx(at_end, rel=1e-12)
    assert t["expected"].sum() == pytest.approx(at_end)
    assert (t["expected"] > 0).all()


def test_tracking_totals_do_not_depend_on_the_time_unit(cdnow, cdnow_tracking) -> None:
    # The same model in days (rate alpha / 7 per day) over daily periods.
    daily = tracking_table(NBD(CDNOW_NBD.r, CDNOW_NBD.alpha * 7), cdnow, CAL_END, OBS_END, "D")
    assert len(daily) == 546 and daily.attrs["calibration_periods"] == 273.0
    weekly = cdnow_tracking
    assert daily["actual"].sum() == weekly["actual"].sum()
    assert daily.loc[273, "actual_cumulative"] == weekly.loc[39, "actual_cumulative"]
    assert daily["expected_cumulative"].iloc[-1] == pytest.approx(
        weekly["expected_cumulative"].iloc[-1]
    )
    # weekly cumulative values are the daily ones at every 7th day
    np.testing.assert_allclose(
        daily["expected_cumulative"].to_numpy()[6::7], weekly["expected_cumulative"].to_numpy()
    )


def test_tracking_input_errors(cdnow) -> None:
    with pytest.raises(DataError, match="must be after"):
        tracking_table(CDNOW_NBD, cdnow, OBS_END, CAL_END)
    with pytest.raises(DataError, match="unknown time_unit"):
        tracking_table(CDNOW_NBD, cdnow, CAL_END, OBS_END, time_unit="Y")
    with pytest.raises(DataError, match="no purchase on or before"):
        tracking_table(CDNOW_NBD, cdnow, "1990-01-01", OBS_END)
    with pytest.raises(DataError, match="missing column"):
        tracking_table(CDNOW_NBD, cdnow.rename(columns={"ts": "date"}), CAL_END, OBS_END)


# --- ground truth: data simulated from the NBD -----------------------------------------------

SIM_START = pd.Timestamp("2021-01-04")
SIM_CAL, SIM_OBS = SIM_START + pd.Timedelta(days=181), SIM_START + pd.Timedelta(days=363)
SIM_MODEL = NBD(0.8, 8.0)  # 0.1 purchases per week on average


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    """Poisson purchases in continuous weeks from each first purchase (uniform over 12 weeks).

    A purchase at u weeks after the first falls on day first + ceil(7 u): the day whose
    btyd_summary time (d - first) / 7 is the first at or after u, so X(t) counts it exactly when
    u <= t. Two purchases on one day merge (about 0.7% at these rates).
    """
    rng = np.random.default_rng(7)
    n = 8000
    first = rng.integers(0, 84, n)
    rate = rng.gamma(SIM_MODEL.r, 1.0 / SIM_MODEL.alpha, n)
    window = (363 - first) / 7.0
    count = rng.poisson(rate * window)
    owner = np.repeat(np.arange(n), count)
    u = rng.uniform(0.0, 1.0, count.sum()) * window[owner]
    day = np.r_[first, first[owner] + np.maximum(np.ceil(7.0 * u), 1)].astype(int)
    return pd.DataFrame(
        {
            "customer_id": np.r_[np.arange(n), owner],
            "ts": SIM_START + pd.to_timedelta(day, unit="D"),
            "amount": 1.0,
        }
    )


def test_tracking_recovers_simulated_repeat_purchases(simulated) -> None:
    t = tracking_table(SIM_MODEL, simulated, SIM_CAL, SIM_OBS, "W")
    assert len(t) == 52 and t.attrs["calibration_periods"] == 26.0
    # ~37,000 purchases, sd ~1.2%; 4% would also miss a one-week shift of every clock
    for period in (26, 52):
        assert t.loc[period, "actual_cumulative"] == pytest.approx(
            t.loc[period, "expected_cumulative"], rel=0.04
        )
    # the shape too: the first 12 weeks (acquisition) and the rest track within 10% each
    early, late = t.iloc[:12], t.iloc[12:]
    assert early["actual"].sum() == pytest.approx(early["expected"].sum(), rel=0.1)
    assert late["actual"].sum() == pytest.approx(late["expected"].sum(), rel=0.05)


def test_histogram_and_conditional_expectations_recover_the_simulated_model(simulated) -> None:
    s = btyd_summary(simulated, SIM_CAL, SIM_OBS, "W")
    hist = frequency_histogram_table(SIM_MODEL, s, max_frequency=5)
    z = (hist["actual"] - hist["expected"]) / np.sqrt(hist["expected"])
    assert (z.abs() < 4).all(), hist
    cond = conditional_expectations_table(SIM_MODEL, s, max_frequency=5)
    se = s.groupby(s["frequency"].clip(upper=5))["frequency_holdout"].sem().to_numpy()
    assert (np.abs(cond["actual"] - cond["predicted"]).to_numpy() < 4 * se + 0.02).all(), cond


# --- frequency / recency matrix --------------------------------------------------------------


def test_frequency_recency_matrix_is_the_model_on_a_grid(cdnow_summary) -> None:
    s = cdnow_summary
    m = frequency_recency_matrix(CDNOW_NBD, s, t=10, kind="purchases")
    t_max = s["T"].max()
    assert m.index.tolist() == list(range(int(s["frequency"].max()) + 1))
    assert m.columns[0] == 0 and m.columns[-1] == t_max and m.columns[1] == 1
    # impossible cells: no repeat purchase but a positive recency, or the reverse
    assert m.iloc[0, 1:].isna().all() and m.iloc[1:, 0].isna().all()
    assert m.iloc[0, 0] == pytest.approx(CDNOW_NBD.r * 10 / (CDNOW_NBD.alpha + t_max))
    assert m.loc[3, 5.0] == pytest.approx((CDNOW_NBD.r + 3) * 10 / (CDNOW_NBD.alpha + t_max))
    alive = frequency_recency_matrix(CDNOW_NBD, s, kind="alive", max_points=10)
    assert alive.shape[1] == 10 and alive.shape[0] <= 10
    assert np.nanmin(alive.to_numpy()) == 1.0
    with pytest.raises(ConfigError):
        frequency_recency_matrix(CDNOW_NBD, s, kind="spend")


# --- plots -----------------------------------------------------------------------------------


def test_all_figures_render(cdnow_summary, cdnow_tracking) -> None:
    rng = np.random.default_rng(5)
    actual = rng.gamma(0.5, 100.0, 300)
    predictions = {"good": actual * rng.lognormal(0, 0.3, 300), "noise": rng.random(300)}
    figures = [
        plot_lorenz(actual, predictions),
        plot_deciles(actual, predictions),
        plot_frequency_histogram(CDNOW_NBD, cdnow_summary),
        plot_conditional_expectations(conditional_expectations_table(CDNOW_NBD, cdnow_summary)),
        plot_tracking_cumulative(cdnow_tracking),
        plot_tracking_incremental(cdnow_tracking),
        plot_frequency_recency_matrix(CDNOW_NBD, cdnow_summary, t=4),
        plot_frequency_recency_matrix(CDNOW_NBD, cdnow_summary, kind="alive"),
    ]
    for fig in figures:
        assert isinstance(fig, plt.Figure)
        assert render(fig) > 5_000


# --- the real BG/NBD on CDNOW (Fader, Hardie & Lee 2005) -------------------------------------


def test_bgnbd_diagnostics_on_the_cdnow_sample(cdnow, cdnow_summary) -> None:
    """The FH 2005 figures with the fitted BG/NBD (r, alpha, a, b = .243, 4.41, .793, 2.43).

    Measured: 78-week cumulative repeat purchases expected 4,160.6 vs actual 4,339 (-4.1%), at
    week 39 2,494.0 vs 2,457; histogram chi-square 4.8 over 8 bins. lifetimes'
    expected_cumulative_transactions (freq "D") gives the same curve one day later (it counts
    day D as D - first + 1), and the same actual counts.
    """
    from crm_models.models.clv import BetaGeo

    s = cdnow_summary
    model = BetaGeo().fit(s)
    assert model.params_ == pytest.approx(
        {"r": 0.2426, "alpha": 4.4136, "a": 0.7929, "b": 2.4259}, rel=1e-3
    )

    hist = frequency_histogram_table(model, s)
    assert hist["expected"].sum() == pytest.approx(2357)
    assert ((hist["actual"] - hist["expected"]) ** 2 / hist["expected"]).sum() < 10

    track = tracking_table(model, cdnow, CAL_END, OBS_END)
    assert track.loc[39, "expected_cumulative"] == pytest.approx(
        model.expected_purchases(s["T"].to_numpy()).sum(), rel=1e-12
    )
    assert track.loc[39, "expected_cumulative"] == pytest.approx(2457, rel=0.03)
    assert track.loc[78, "expected_cumulative"] == pytest.approx(4339, rel=0.05)

    cond = conditional_expectations_table(model, s)
    assert (cond["n"] * cond["predicted"]).sum() == pytest.approx(
        model.predict_purchases(s, 39.0).sum()
    )
    assert cond["predicted"].is_monotonic_increasing and cond["actual"].is_monotonic_increasing

    alive = frequency_recency_matrix(model, s, kind="alive").to_numpy()
    assert np.nanmax(alive) <= 1.0 and np.nanmin(alive) >= 0.0
    # BG/NBD: for repeat buyers P(alive) rises with recency
    assert (np.diff(alive[1:, 1:], axis=1) >= -1e-12).all()
    figures = [
        plot_frequency_histogram(model, s),
        plot_conditional_expectations(cond),
        plot_tracking_cumulative(track),
        plot_tracking_incremental(track),
        plot_frequency_recency_matrix(model, s, kind="alive"),
    ]
    assert all(render(fig) > 5_000 for fig in figures)
