"""Survival metrics and plots against known truth.

Data: exponential churn times with hazard exp(x) / 200 per day, x ~ N(0, 1), independent uniform
censoring on [0, 360] days and administrative censoring at H = 180 days (as the churn labels do).
The true C-indices follow from the model in closed form (numerical quadrature below); calibration,
AUC and Brier checks compare the true model with a random score, a halved probability and the
Kaplan-Meier (no covariates) predictor; scikit-survival and lifelines are the peers.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from sksurv.metrics import (
    brier_score,
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
)
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from crm_models.errors import ConfigError, DataError
from crm_models.evaluation import (
    calibration_error,
    calibration_table,
    harrell_c_index,
    plot_calibration,
    plot_km_by_segment,
    plot_risk_distribution,
    plot_survival_curves,
    select_customers_by_risk,
    survival_metrics,
)

H, BASE_RATE, CENSOR_MAX = 180.0, 1 / 200, 360.0
N = 3000
JUST_BELOW_H = np.nextafter(H, 0.0)


def simulate(n: int, rng: np.random.Generator, admin: float = H):
    x = rng.normal(size=n)
    rate = BASE_RATE * np.exp(x)
    t = rng.exponential(1 / rate)
    c = np.minimum(rng.uniform(0, CENSOR_MAX, n), admin)
    return x, rate, np.minimum(t, c), t <= c


def exp_survival(rate: np.ndarray):
    return lambda times: np.exp(-np.outer(rate, times))


def true_c_indices() -> tuple[float, float]:
    """Population (Uno, Harrell) concordance of the true risk x for this simulation.

    For a pair with hazards a (customer i) and b: Uno's C with tau = H estimates
    P(x_i > x_j | T_i < T_j, T_i < H), pair weight P(T_i < T_j, T_i < H) = a/(a+b)(1 - e^{-(a+b)H});
    Harrell's C also weights by both customers being uncensored at T_i: int_0^H a e^{-(a+b)t} G(t)^2
    dt with G(t) = 1 - t/360. Integrated over x_i, x_j ~ N(0, 1) in s = x_i + x_j (Gauss-Hermite)
    and d = x_i - x_j > 0 (Gauss-Legendre), so the concordance indicator has no jump inside a cell.
    """
    z, wz = np.polynomial.hermite.hermgauss(80)
    s, ws = 2 * z, wz / np.sqrt(np.pi)
    u, wu = np.polynomial.legendre.leggauss(200)
    d = (u + 1) * 6
    wd = wu * 6 * np.exp(-(d**2) / 4) / np.sqrt(4 * np.pi)
    v, wv = np.polynomial.legendre.leggauss(200)
    t, wt = (v + 1) * H / 2, wv * H / 2
    S, D = np.meshgrid(s, d, indexing="ij")
    W = ws[:, None] * wd[None, :]

    def weights(xi, xj):
        a, b = BASE_RATE * np.exp(xi), BASE_RATE * np.exp(xj)
        uno = a / (a + b) * (1 - np.exp(-(a + b) * H))
        harrell = (
            a[..., None] * np.exp(-(a + b)[..., None] * t) * (1 - t / CENSOR_MAX) ** 2 * wt
        ).sum(-1)
        return uno, harrell

    uno_c, har_c = weights((S + D) / 2, (S - D) / 2)  # the riskier customer churns first
    uno_d, har_d = weights((S - D) / 2, (S + D) / 2)
    return (W * uno_c).sum() / (W * (uno_c + uno_d)).sum(), (W * har_c).sum() / (
        W * (har_c + har_d)
    ).sum()


@pytest.fixture(scope="module")
def sim():
    rng = np.random.default_rng(2024)
    _, _, d_train, e_train = simulate(N, rng)
    x, rate, d, e = simulate(N, rng)
    noise = rng.normal(size=N)
    km_t, km_s = kaplan_meier_estimator(e_train, d_train)

    def km_survival(times):
        return np.tile(km_s[np.searchsorted(km_t, times, side="right") - 1], (N, 1))

    def halved(times):
        return 1.0 - 0.5 * (1.0 - np.exp(-np.outer(rate, times)))

    def run(risk, predict):
        return survival_metrics(d_train, e_train, d, e, risk, predict, [90, 180])

    return {
        "train": (d_train, e_train),
        "test": (d, e),
        "x": x,
        "rate": rate,
        "true": run(x, exp_survival(rate)),
        "random": run(noise, exp_survival(BASE_RATE * np.exp(noise))),
        "halved": run(x, halved),
        "km": run(x, km_survival),
    }


def test_harrell_c_from_sksurv_equals_lifelines_without_tied_times(sim):
    d, e = sim["test"]
    # the only tied times are the censorings at H, which form no comparable pair in either library
    assert sim["true"]["c_index"] == pytest.approx(harrell_c_index(d, e, sim["x"]), abs=1e-9)
    keep = d < H
    d, e = d[keep], e[keep]
    assert len(np.unique(d)) == len(d)
    noisy = sim["x"][keep] + np.random.default_rng(0).normal(size=len(d))
    for risk in (sim["x"][keep], noisy):
        assert concordance_index_censored(e, d, risk)[0] == pytest.approx(
            harrell_c_index(d, e, risk), abs=1e-9
        )


def test_c_indices_of_true_risk_match_closed_form(sim):
    uno_truth, harrell_truth = true_c_indices()
    m = sim["true"]
    # n = 3000: the sampling sd of either C is ~0.006 (measured over 10 seeds)
    assert m["c_index"] == pytest.approx(harrell_truth, abs=0.02)
    assert m["uno_c_index"] == pytest.approx(uno_truth, abs=0.02)
    assert abs(m["c_index"] - m["uno_c_index"]) < 0.015
    assert m["uno_tau"] == JUST_BELOW_H


def test_time_dependent_auc_is_informative_for_true_risk_and_half_for_noise(sim):
    true, noise = sim["true"], sim["random"]
    for key in ("auc_90d", "auc_180d", "mean_auc"):
        assert true[key] > 0.7
        assert noise[key] == pytest.approx(0.5, abs=0.04)
    assert noise["c_index"] == pytest.approx(0.5, abs=0.04)


def test_calibration_error_near_zero_for_true_probabilities_and_large_when_halved(sim):
    d, e = sim["test"]
    table = calibration_table(d, e, 1 - np.exp(-sim["rate"] * JUST_BELOW_H), JUST_BELOW_H)
    assert calibration_error(table) == pytest.approx(
        sim["true"]["calibration_error_180d"], abs=1e-12
    )
    # a calibrated model still misses by the Kaplan-Meier sampling error: E|N(0, se)| = 0.8 se
    se = (table["observed_upper"] - table["observed_lower"]) / (2 * 1.96)
    sampling = float(np.average(se * np.sqrt(2 / np.pi), weights=table["n"]))
    for h in (90, 180):
        assert sim["true"][f"calibration_error_{h}d"] < 2 * sampling
        assert sim["halved"][f"calibration_error_{h}d"] > max(
            0.15, 5 * sim["true"][f"calibration_error_{h}d"]
        )
    covered = (table["observed_lower"] <= table["predicted"]) & (
        table["predicted"] <= table["observed_upper"]
    )
    assert covered.sum() >= 8


def test_integrated_brier_score_of_true_model_beats_kaplan_meier(sim):
    true, km = sim["true"], sim["km"]
    assert true["integrated_brier_score"] < km["integrated_brier_score"] - 0.03
    assert true["brier_90d"] < km["brier_90d"] and true["brier_180d"] < km["brier_180d"]
    # the covariate-free predictor ranks nobody
    assert km["auc_90d"] == pytest.approx(0.5) and km["mean_auc"] == pytest.approx(0.5)


def test_auc_depends_only_on_the_ranking_even_for_tiny_churn_probabilities(sim):
    (d_train, e_train), (d, e) = sim["train"], sim["test"]
    # P(churn) ~ 1e-9: differences below sksurv's absolute tie tolerance (1e-8) if scored raw
    tiny = survival_metrics(
        d_train, e_train, d, e, sim["x"], exp_survival(sim["rate"] * 1e-9), [90, 180]
    )
    for key in ("auc_90d", "auc_180d"):
        assert tiny[key] == pytest.approx(sim["true"][key], abs=1e-12)
    # at the earliest grid days S = 1 - 1e-13 keeps only ~3 digits of the hazard in float64
    assert tiny["mean_auc"] == pytest.approx(sim["true"]["mean_auc"], abs=1e-5)


def test_horizon_at_administrative_censoring_is_evaluated_just_below_it(sim):
    (d_train, e_train), (d, e) = sim["train"], sim["test"]
    train, test = Surv.from_arrays(e_train, d_train), Surv.from_arrays(e, d)
    with pytest.raises(ValueError, match="follow-up"):
        brier_score(train, test, np.exp(-sim["rate"] * H)[:, None], [H])
    m = survival_metrics(d_train, e_train, d, e, sim["x"], exp_survival(sim["rate"]), [180, 400])
    assert m["eval_time_180d"] == m["eval_time_400d"] == JUST_BELOW_H < H
    assert m["auc_400d"] == m["auc_180d"] == sim["true"]["auc_180d"]
    assert all(np.isfinite(v) for v in m.values())


def test_metrics_inside_the_window_equal_scikit_survival_direct_calls(sim):
    (d_train, e_train), (d, e) = sim["train"], sim["test"]
    train, test = Surv.from_arrays(e_train, d_train), Surv.from_arrays(e, d)
    x, rate = sim["x"], sim["rate"]
    m = survival_metrics(d_train, e_train, d, e, x, exp_survival(rate), [30, 90])
    assert m["eval_time_30d"] == 30 and m["eval_time_90d"] == 90
    assert m["uno_c_index"] == pytest.approx(
        concordance_index_ipcw(train, test, x, tau=90)[0], abs=1e-12
    )
    # proportional hazards: the cumulative hazard at t ranks customers exactly like x
    auc, _ = cumulative_dynamic_auc(train, test, x, [30, 90])
    assert [m["auc_30d"], m["auc_90d"]] == pytest.approx(auc, abs=1e-12)
    _, bs = brier_score(train, test, np.exp(-np.outer(rate, [30, 90])), [30, 90])
    assert [m["brier_30d"], m["brier_90d"]] == pytest.approx(bs, abs=1e-12)


def test_follow_up_past_training_censoring_is_truncated_without_changing_metrics():
    rng = np.random.default_rng(5)
    _, _, d_train, e_train = simulate(1500, rng, admin=120.0)  # training G drops to 0 at 120
    x, rate, d, e = simulate(1500, rng)  # held-out follow-up runs to 180
    train = Surv.from_arrays(e_train, d_train)
    with pytest.raises(ValueError, match="censoring survival function is zero"):
        cumulative_dynamic_auc(train, Surv.from_arrays(e, d), x, [60])
    long = survival_metrics(d_train, e_train, d, e, x, exp_survival(rate), [60, 180])
    assert long["eval_time_180d"] == np.nextafter(120.0, 0.0)
    # censoring the held-out data earlier (at 100) must not move any metric at day 60
    d100, e100 = np.minimum(d, 100.0), e & (d <= 100.0)
    short = survival_metrics(d_train, e_train, d100, e100, x, exp_survival(rate), [60, 100])
    for key in ("auc_60d", "brier_60d"):
        assert long[key] == pytest.approx(short[key], abs=1e-12)
    direct, _ = cumulative_dynamic_auc(train, Surv.from_arrays(e100, d100), x, [60])
    assert long["auc_60d"] == pytest.approx(direct[0], abs=1e-12)


def test_calibration_table_without_censoring_is_the_event_share_per_decile():
    rng = np.random.default_rng(3)
    p = rng.uniform(size=1000)
    d = rng.exponential(50, size=1000)
    table = calibration_table(d, np.ones(1000), p, 40.0)
    assert len(table) == 10 and (table["n"] == 100).all()
    assert table["predicted"].is_monotonic_increasing
    bins = np.argsort(np.argsort(p)) // 100
    share = [np.mean(d[bins == b] <= 40.0) for b in range(10)]
    np.testing.assert_allclose(table["observed"], share, atol=1e-12)
    assert (
        (table["observed_lower"] <= table["observed"])
        & (table["observed"] <= table["observed_upper"])
    ).all()


def test_calibration_observed_and_ci_match_lifelines_kaplan_meier():
    rng = np.random.default_rng(1)
    t, c = rng.exponential(100, 500), rng.uniform(0, 200, 500)
    d, e = np.minimum(t, c), t <= c
    p = rng.uniform(size=500)
    table = calibration_table(d, e, p, 60.0, n_bins=5)
    lowest = np.argsort(p, kind="stable")[:100]
    kmf = KaplanMeierFitter().fit(d[lowest], e[lowest])
    ci = kmf.confidence_interval_survival_function_.asof(60.0).to_numpy()  # exponential Greenwood
    assert table.loc[1, "observed"] == pytest.approx(
        1 - kmf.survival_function_at_times(60.0).iloc[0], abs=1e-12
    )
    assert table.loc[1, ["observed_lower", "observed_upper"]].tolist() == pytest.approx(
        1 - ci[::-1], abs=1e-9
    )


def test_bins_without_follow_up_to_the_horizon_are_undefined_and_skipped():
    p = np.r_[np.full(50, 0.1), np.full(50, 0.9)]
    d = np.r_[np.full(50, 100.0), np.full(50, 10.0)]  # risky half censored at day 10
    e = np.zeros(100, dtype=bool)
    e[:10] = True
    d[:10] = 20.0
    table = calibration_table(d, e, p, 50.0, n_bins=2)
    assert table.loc[1, "observed"] == pytest.approx(0.2)
    assert np.isnan(table.loc[2, "observed"])
    assert calibration_error(table) == pytest.approx(0.1)


def test_horizon_before_the_first_churn_gives_nan_discrimination_not_a_crash():
    rng = np.random.default_rng(4)
    d = np.r_[rng.uniform(50, 100, 20), rng.uniform(5, 100, 20)]
    e = np.r_[np.ones(20), np.zeros(20)]
    x = rng.normal(size=40)
    m = survival_metrics(d, e, d, e, x, lambda t: np.exp(-np.outer(np.ones(40), t) / 100), [20])
    assert np.isnan(m["auc_20d"]) and np.isnan(m["uno_c_index"]) and np.isnan(m["mean_auc"])
    assert np.isfinite(m["c_index"]) and np.isfinite(m["brier_20d"])
    assert m["calibration_error_20d"] == pytest.approx(1 - np.exp(-0.2))  # nobody churned by day 20


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"test_event": np.zeros(50)}, DataError, "no customer churned"),
        ({"test_duration": np.r_[np.nan, np.ones(49)]}, DataError, "NaN"),
        ({"train_duration": np.r_[-1.0, np.ones(49)]}, DataError, "negative"),
        ({"risk": np.ones(49)}, DataError, "risk has 49"),
        ({"predict_survival": lambda t: np.ones((50, 1))}, DataError, "shape"),
        (
            {"predict_survival": lambda t: np.full((50, len(t)), 1.5)},
            DataError,
            r"outside \[0, 1\]",
        ),
        ({"horizons": []}, ConfigError, "positive"),
        ({"horizons": [-30]}, ConfigError, "positive"),
    ],
)
def test_degenerate_inputs_raise_clear_errors(change, error, match):
    rng = np.random.default_rng(0)
    args = {
        "train_duration": rng.uniform(1, 100, 50),
        "train_event": rng.integers(0, 2, 50),
        "test_duration": rng.uniform(1, 100, 50),
        "test_event": rng.integers(0, 2, 50),
        "risk": rng.normal(size=50),
        "predict_survival": lambda t: np.exp(-np.outer(np.ones(50), t) / 100),
        "horizons": [30],
    }
    with pytest.raises(error, match=match):
        survival_metrics(**{**args, **change})


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def test_plot_calibration_draws_diagonal_and_one_point_per_bin(sim):
    d, e = sim["test"]
    table = calibration_table(d, e, 1 - np.exp(-sim["rate"] * 90.0), 90.0)
    fig = plot_calibration(table, 90)
    ax = fig.axes[0]
    assert _png(fig).startswith(b"\x89PNG")
    (bars,) = ax.containers
    assert len(bars.lines[0].get_xdata()) == 10
    diagonal = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(diagonal) == 1 and list(diagonal[0].get_xdata()) == list(diagonal[0].get_ydata())
    assert "90 days" in ax.get_title() and len(ax.get_legend().get_texts()) == 2


def test_plot_survival_curves_one_line_per_customer(sim):
    picks = select_customers_by_risk(sim["x"], 8)
    assert len(picks) == 8
    assert picks[0] == np.argmin(sim["x"]) and picks[-1] == np.argmax(sim["x"])
    assert np.all(np.diff(sim["x"][picks]) > 0)
    times = np.linspace(0, 180, 60)
    fig = plot_survival_curves(
        times, np.exp(-np.outer(sim["rate"][picks], times)), [f"c{i}" for i in range(8)]
    )
    assert _png(fig).startswith(b"\x89PNG")
    assert len(fig.axes[0].lines) == 8
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [f"c{i}" for i in range(8)]


def test_plot_km_by_segment_and_risk_distribution(sim):
    d, e = sim["test"]
    segment = np.where(sim["x"] > 1, "high", np.where(sim["x"] < -1, "low", "mid"))
    fig = plot_km_by_segment(d, e, segment)
    assert _png(fig).startswith(b"\x89PNG")
    ax = fig.axes[0]
    assert len(ax.lines) == 3 and len(ax.collections) == 3  # a curve and a confidence band each
    assert len(fig.legends[0].get_texts()) == 3
    fig = plot_risk_distribution(sim["x"], e)
    assert _png(fig).startswith(b"\x89PNG")
    assert len(fig.axes[0].patches) == 80  # 40 bins x (churned, censored)
