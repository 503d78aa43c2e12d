"""BTYD models (crm_models.models.clv): published estimates, lifetimes' numbers, exact posteriors,
numerical stability, invariants and input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy.special import betaln, gammaln
from sklearn.base import clone

from crm_models.data.cdnow import load_cdnow
from crm_models.errors import CrmModelsError, ModelInputError
from crm_models.features import btyd_summary
from crm_models.models.clv import (
    BetaGeo,
    BetaGeoBetaBinom,
    GammaGamma,
    ModelFitError,
    ModifiedBetaGeo,
    ParetoNBD,
)
from crm_models.models.clv import base as btyd_base
from crm_models.models.clv.base import compress, group_rows, log_hyp2f1

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    """Fader-Hardie design: 2,357-customer sample, 39-week calibration, weekly units."""
    return btyd_summary(load_cdnow(sample=True), "1997-09-30", "1998-06-30")


@pytest.fixture(scope="module")
def donations() -> pd.DataFrame:
    return pd.read_csv(DATA / "donations_fhs2010.csv", comment="#")


@pytest.fixture(scope="module")
def fitted(cdnow: pd.DataFrame, donations: pd.DataFrame) -> dict:
    return {
        "bgnbd": BetaGeo().fit(cdnow),
        "mbgnbd": ModifiedBetaGeo().fit(cdnow),
        "pareto": ParetoNBD().fit(cdnow),
        "gamma_gamma": GammaGamma().fit(cdnow),
        "bgbb": BetaGeoBetaBinom().fit(donations, weights="count"),
    }


def with_params(cls: type, **params: float):
    """A model with given parameters (to compare formulas with a peer at identical values)."""
    model = cls()
    model.params_ = params
    return model


def assert_published(params: dict, published: dict[str, str]) -> None:
    """Estimates rounded to the published number of decimals equal the published table."""
    for name, text in published.items():
        decimals = len(text.split(".")[1]) if "." in text else 0
        assert round(params[name], decimals) == float(text), (name, params[name], text)


# --- published estimates ------------------------------------------------------------------------


def test_bgnbd_reproduces_fader_hardie_lee_2005_cdnow_estimates(fitted: dict) -> None:
    # Fader, Hardie & Lee (2005), "Counting your customers the easy way", section 5.
    m = fitted["bgnbd"]
    assert_published(m.params_, {"r": "0.243", "alpha": "4.414", "a": "0.793", "b": "2.426"})
    assert round(m.log_likelihood_, 1) == -9582.4
    assert m.n_customers_ == 2_357
    assert m.convergence_.success and m.convergence_.gradient_norm <= m.tol


def test_pareto_nbd_reproduces_fader_hardie_note_cdnow_estimates(fitted: dict) -> None:
    # Fader & Hardie (2005), "A Note on Deriving the Pareto/NBD Model and Related Expressions".
    m = fitted["pareto"]
    assert_published(m.params_, {"r": "0.553", "alpha": "10.578", "s": "0.606", "beta": "11.669"})
    assert round(m.log_likelihood_, 1) == -9595.0


def test_mbgnbd_reproduces_batislam_2007_estimates_used_by_lifetimes(fitted: dict) -> None:
    # Batislam, Denizel & Filiztekin (2007); lifetimes' test_modified_beta_geo_fitter values.
    m = fitted["mbgnbd"]
    assert_published(m.params_, {"r": "0.525", "alpha": "6.183", "a": "0.891", "b": "1.614"})


def test_gamma_gamma_reproduces_fader_hardie_2013_on_946_repeat_buyers(
    fitted: dict, cdnow: pd.DataFrame
) -> None:
    # Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value": 946 repeat buyers, their
    # mean spend per repeat transaction in the calibration period (= our monetary_value).
    m = fitted["gamma_gamma"]
    assert (cdnow["frequency"] > 0).sum() == 946 and m.n_customers_ == 946
    assert_published(m.params_, {"p": "6.25", "q": "3.74", "v": "15.44"})


def test_bgbb_reproduces_fader_hardie_shang_2010_donations_estimates(
    fitted: dict, donations: pd.DataFrame
) -> None:
    # Fader, Hardie & Shang (2010), Marketing Science 29(6): 11,104 donors, 6 opportunities.
    m = fitted["bgbb"]
    assert len(donations) == 22 and m.n_customers_ == 11_104
    assert_published(
        m.params_, {"alpha": "1.204", "beta": "0.750", "gamma": "0.657", "delta": "2.783"}
    )
    assert round(m.log_likelihood_, 1) == -33225.6


def test_bgnbd_fhl2005_example_customer_expects_1_226_purchases(fitted: dict) -> None:
    # FHL 2005, section 5: x = 2, t_x = 30.43, T = 38.86 expects 1.226 purchases in 39 weeks.
    example = pd.DataFrame({"frequency": [2], "recency": [30.43], "T": [38.86]})
    assert round(float(fitted["bgnbd"].predict_purchases(example, 39)[0]), 3) == 1.226


# --- lifetimes 0.11.3 on the same parameters ------------------------------------------------------
# Reference numbers made with lifetimes 0.11.3 in benchmarks/.venv: each lifetimes fitter got
# `params_ = pd.Series(<the parameters below>)` and its conditional_probability_alive,
# conditional_expected_number_of_purchases_up_to_time, expected_number_of_purchases_up_to_time,
# probability_of_n_purchases_up_to_time, conditional_expected_average_profit and
# customer_lifetime_value (freq="W") were printed to 12 decimals for the CUSTOMERS below.

CUSTOMERS = pd.DataFrame(
    {
        "frequency": [0, 2, 1, 7, 29, 3],
        "recency": [0.0, 30.43, 1.71, 29.43, 38.43, 5.0],
        "T": [38.86, 38.86, 38.86, 35.43, 38.86, 20.0],
        "monetary_value": [0.0, 22.35, 11.77, 41.2, 38.5, 5.5],
    },
    index=pd.Index([f"c{i}" for i in range(6)], name="customer_id"),
)
BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
MBGNBD = {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}
PARETO = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
LIFETIMES = {
    "bgnbd": {
        "prob_alive": [
            1.0,
            0.726578570081,
            0.212100985377,
            0.765149748234,
            0.966274633619,
            0.202455572512,
        ],
        "purchases_39": [
            0.195098052011,
            1.226028174767,
            0.20318698708,
            4.25437277414,
            19.677377187278,
            0.770565999712,
        ],
        "expected_1_39_78": [0.053267891172, 1.196723193321, 1.860519057943],
        "prob_n_0_4_at_39": [
            0.573786352096,
            0.199395280836,
            0.085429759539,
            0.045860353848,
            0.027671449336,
        ],
    },
    "mbgnbd": {
        "prob_alive": [
            0.389735080919,
            0.706202265118,
            0.17083648431,
            0.749724407353,
            0.962804257792,
            0.205173743141,
        ],
        "purchases_39": [
            0.154012746675,
            1.262960623267,
            0.188836541364,
            4.061256947598,
            18.611571460184,
            0.772935748706,
        ],
        "expected_1_39_78": [0.053084795264, 1.182953665597, 1.804757577553],
        "prob_n_0_4_at_39": [
            0.582473189493,
            0.182783077288,
            0.086894825673,
            0.048570442952,
            0.029774148559,
        ],
    },
    "pareto": {
        "prob_alive": [
            0.295286604617,
            0.869167559153,
            0.168002326724,
            0.866679704861,
            0.994109839535,
            0.321514025532,
        ],
        "purchases_39": [
            0.107081468215,
            1.455123193258,
            0.171092980554,
            4.563352335024,
            19.265548852543,
            1.116961500601,
        ],
        "expected_1_39_78": [0.050979843246, 1.213002844281, 1.909398129314],
    },
}
MODELS_AT_FIXED_PARAMS = {
    "bgnbd": (BetaGeo, BGNBD),
    "mbgnbd": (ModifiedBetaGeo, MBGNBD),
    "pareto": (ParetoNBD, PARETO),
}


def test_bgnbd_prob_alive_matches_lifetimes_within_1e_6(fitted: dict, cdnow: pd.DataFrame) -> None:
    ours = with_params(BetaGeo, **BGNBD).prob_alive(CUSTOMERS)
    np.testing.assert_allclose(ours, LIFETIMES["bgnbd"]["prob_alive"], rtol=0, atol=1e-9)
    # On the whole CDNOW summary with our fitted parameters: lifetimes' closed form, restated.
    r, alpha, a, b = fitted["bgnbd"].params_.values()
    x, t_x, T = cdnow["frequency"], cdnow["recency"], cdnow["T"]
    lifetimes_formula = np.where(
        x == 0, 1.0, 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))
    )
    np.testing.assert_allclose(fitted["bgnbd"].prob_alive(cdnow), lifetimes_formula, atol=1e-6)


@pytest.mark.parametrize("name", ["bgnbd", "mbgnbd", "pareto"])
def test_conditional_and_unconditional_expectations_match_lifetimes(name: str) -> None:
    cls, params = MODELS_AT_FIXED_PARAMS[name]
    model, ref = with_params(cls, **params), LIFETIMES[name]
    np.testing.assert_allclose(model.prob_alive(CUSTOMERS), ref["prob_alive"], atol=1e-10)
    np.testing.assert_allclose(
        model.predict_purchases(CUSTOMERS, 39), ref["purchases_39"], rtol=1e-9
    )
    np.testing.assert_allclose(
        model.expected_purchases(np.array([1.0, 39.0, 78.0])), ref["expected_1_39_78"], rtol=1e-9
    )
    if "prob_n_0_4_at_39" in ref:
        np.testing.assert_allclose(
            model.prob_n_purchases(np.arange(5), 39), ref["prob_n_0_4_at_39"], rtol=1e-9
        )


def test_pareto_nbd_log_likelihood_matches_lifetimes_per_customer() -> None:
    # lifetimes' ParetoNBDFitter._conditional_log_likelihood (scipy hyp2f1, moderate x only).
    lifetimes_ll = [
        -0.521046294081,
        -9.55428324515,
        -4.450194333881,
        -21.154213930289,
        -45.583052192812,
        -9.533111752832,
    ]
    model = ParetoNBD()
    data = model._precompute(model._prepare(CUSTOMERS, fit=True))
    ours = model._log_likelihood(np.array(list(PARETO.values())), data)
    np.testing.assert_allclose(ours, lifetimes_ll, rtol=1e-10)


def test_bgbb_expectations_match_lifetimes(donations: pd.DataFrame) -> None:
    model = with_params(BetaGeoBetaBinom, alpha=1.204, beta=0.750, gamma=0.657, delta=2.783)
    rows = donations.iloc[[0, 1, 5, 10, 21]]
    assert rows[["frequency", "recency"]].to_numpy().tolist() == [
        [0, 0],
        [1, 1],
        [1, 5],
        [2, 5],
        [6, 6],
    ]
    np.testing.assert_allclose(
        model.predict_purchases(rows, 5),
        [0.072802877475, 0.085635398338, 1.021665815828, 1.442895370405, 3.7521156076],
        rtol=1e-9,
    )
    np.testing.assert_allclose(
        model.prob_alive(rows),
        [0.116096613293, 0.074600068299, 0.890009752028, 0.864648964296, 1.0],
        atol=1e-10,
    )
    np.testing.assert_allclose(
        model.prob_alive(rows, future_periods=1),
        [0.108016584169, 0.069408093207, 0.828067336023, 0.804471594641, 0.930402542373],
        atol=1e-10,
    )
    # lifetimes' expected_number_of_transactions_in_first_n_periods(6): 11,104 * P(X(6) = x).
    np.testing.assert_allclose(
        11_104 * model.prob_n_purchases(np.arange(7), 6),
        [
            3455.761821201786,
            1888.90120022594,
            1348.919624867337,
            1113.32162923542,
            1017.791012430332,
            1026.910666340367,
            1252.39404569882,
        ],
        rtol=1e-10,
    )


def test_gamma_gamma_spend_and_clv_match_lifetimes() -> None:
    gg = with_params(GammaGamma, p=6.25, q=3.74, v=15.44)
    np.testing.assert_allclose(
        gg.predict_spend(CUSTOMERS),
        [
            35.21897810219,
            24.663713910761,
            18.916852057842,
            40.847494084749,
            38.45113864884,
            9.289204281061,
        ],
        rtol=1e-10,
    )
    # lifetimes: time=12 months, discount_rate=0.01 a month, freq="W" (4.345 weeks a month).
    bg = with_params(BetaGeo, **BGNBD)
    clv = gg.customer_lifetime_value(bg, CUSTOMERS, 12, 0.01, period_days=4.345 * 7)
    np.testing.assert_allclose(
        clv,
        [
            8.36900435892,
            36.2892111256,
            4.637294659747,
            206.033532885687,
            894.56666204019,
            8.403805670254,
        ],
        rtol=1e-9,
    )
    pareto = with_params(ParetoNBD, **PARETO)
    clv = gg.customer_lifetime_value(pareto, CUSTOMERS, 24, 0.02, period_days=4.345 * 7)
    np.testing.assert_allclose(
        clv,
        [
            6.691527442993,
            63.678442531633,
            5.742688441287,
            328.606780893318,
            1314.391635641374,
            17.62516820161,
        ],
        rtol=1e-9,
    )
    assert (gg.customer_lifetime_value(bg, CUSTOMERS, 12, 0.01, margin=0.3) > 0).all()
    np.testing.assert_allclose(
        gg.customer_lifetime_value(bg, CUSTOMERS, 12, 0.01, margin=0.3),
        0.3 * gg.customer_lifetime_value(bg, CUSTOMERS, 12, 0.01),
    )
    # Spend read from another table (e.g. zero-value repeat buyers recoded as one-time buyers).
    recoded = CUSTOMERS.assign(frequency=[0, 2, 1, 0, 29, 3])
    clv = gg.customer_lifetime_value(bg, CUSTOMERS, 12, 0.01, spend_summary=recoded)
    spend = gg.predict_spend(recoded)
    np.testing.assert_allclose(
        clv,
        spend / gg.predict_spend(CUSTOMERS) * gg.customer_lifetime_value(bg, CUSTOMERS, 12, 0.01),
    )


def test_standard_errors_match_lifetimes_hessian(fitted: dict) -> None:
    # lifetimes 0.11.3 `.summary["se(coef)"]` after fitting the same data (autograd Hessian).
    expected = {
        "bgnbd": [0.012557, 0.378224, 0.185734, 0.705414],
        "gamma_gamma": [1.190055, 0.290133, 4.159423],
        "bgbb": [0.069391, 0.029448, 0.051010, 0.320819],
    }
    for name, se in expected.items():
        table = fitted[name].summary()
        np.testing.assert_allclose(table["se"], se, rtol=1e-3, err_msg=name)
        assert list(table.columns) == ["coef", "se", "lower 95%", "upper 95%"]
        assert (table["lower 95%"] < table["coef"]).all() and (
            table["coef"] < table["upper 95%"]
        ).all()


# --- posterior purchase rate vs numerical integration ---------------------------------------------

POSTERIOR_CUSTOMERS = pd.DataFrame(
    {
        "frequency": [0, 2, 7, 40],
        "recency": [0.0, 30.43, 29.43, 20.0],
        "T": [38.86, 38.86, 35.43, 38.0],
    }
)


def _log_gamma_pdf(lam: float, shape: float, rate: float) -> float:
    return shape * np.log(rate) + (shape - 1) * np.log(lam) - rate * lam - gammaln(shape)


def _bg_rate_by_quadrature(params: dict, x: float, t_x: float, T: float, d: int) -> float:
    """E[lambda | data], lambda integrated numerically; p only through two beta integrals."""
    r, alpha, a, b = params.values()
    alive = np.exp(betaln(a, b + x + d) - betaln(a, b))
    dead = np.exp(betaln(a + 1, b + x + d - 1) - betaln(a, b)) if x + d > 0 else 0.0
    mode = (r + x) / (alpha + t_x)

    def integrand(lam: float, k: int) -> float:
        return np.exp((x + k) * np.log(lam) + _log_gamma_pdf(lam, r, alpha)) * (
            alive * np.exp(-lam * T) + dead * np.exp(-lam * t_x)
        )

    opts = {"epsabs": 0, "epsrel": 1e-11, "limit": 500, "points": [mode]}
    num = integrate.quad(integrand, 0, 60 * mode + 1, args=(1,), **opts)[0]
    return num / integrate.quad(integrand, 0, 60 * mode + 1, args=(0,), **opts)[0]


def _pareto_rate_by_quadrature(params: dict, x: float, t_x: float, T: float) -> float:
    """E[lambda | data], lambda and the death time u integrated numerically, mu analytically."""
    r, alpha, s, beta = params.values()
    mode = (r + x) / (alpha + t_x)

    def integrand(lam: float, k: int) -> float:
        death = integrate.quad(
            lambda u: np.exp(-lam * u) * s * beta**s / (beta + u) ** (s + 1),
            t_x,
            T,
            epsabs=0,
            epsrel=1e-12,
        )[0]
        alive = np.exp(-lam * T) * (beta / (beta + T)) ** s
        return np.exp((x + k) * np.log(lam) + _log_gamma_pdf(lam, r, alpha)) * (alive + death)

    opts = {"epsabs": 0, "epsrel": 1e-10, "limit": 500, "points": [mode]}
    num = integrate.quad(integrand, 0, 60 * mode + 1, args=(1,), **opts)[0]
    return num / integrate.quad(integrand, 0, 60 * mode + 1, args=(0,), **opts)[0]


@pytest.mark.parametrize("name", ["bgnbd", "mbgnbd", "pareto"])
def test_posterior_purchase_rate_equals_numerical_integration(name: str) -> None:
    cls, params = MODELS_AT_FIXED_PARAMS[name]
    ours = with_params(cls, **params).posterior_purchase_rate(POSTERIOR_CUSTOMERS)
    rows = POSTERIOR_CUSTOMERS.to_numpy(dtype=float)
    if name == "pareto":
        ref = [_pareto_rate_by_quadrature(params, *row) for row in rows]
    else:
        ref = [_bg_rate_by_quadrature(params, *row, int(name == "mbgnbd")) for row in rows]
    np.testing.assert_allclose(ours, ref, rtol=1e-8)


# --- numerics -------------------------------------------------------------------------------------


def test_log_hyp2f1_matches_closed_forms_where_scipy_overflows() -> None:
    # 2F1(a, b; b; z) = (1 - z)^-a: for a = 1000 the value is 1e1000 (scipy.special.hyp2f1: inf).
    log_f, sign = log_hyp2f1(1000.0, 5.0, 5.0, 0.9)
    assert sign == 1 and log_f == pytest.approx(1000 * np.log(10), rel=1e-13)
    # 2F1(1, 1; 2; z) = -log(1 - z) / z, slow to converge near z = 1.
    z = np.array([0.0, 0.3, 0.9, 0.999])
    log_f, _ = log_hyp2f1(1.0, 1.0, 2.0, z)
    expected = np.where(z > 0, -np.log1p(-z) / np.where(z > 0, z, 1), 1.0)
    np.testing.assert_allclose(np.exp(log_f), expected, rtol=1e-12)
    # 2F1(a, b; a + 1; z) = a * integral_0^1 u^(a-1) (1 - z u)^-b du (the Pareto/NBD form), with
    # a large b: compare logs of the integral computed with the integrand scaled by its maximum.
    a, b, z = 502.6, 500.55, 0.7
    log_peak = -b * np.log1p(-z)  # the integrand's maximum, at u = 1
    integral = integrate.quad(
        lambda u: np.exp((a - 1) * np.log(u) - b * np.log1p(-z * u) - log_peak),
        0,
        1,
        epsabs=0,
        epsrel=1e-13,
        points=[0.99],
    )[0]
    assert log_hyp2f1(a, b, a + 1, z)[0] == pytest.approx(
        np.log(a * integral) + log_peak, rel=1e-12
    )


def _bg_expected_if_alive_by_quadrature(
    params: dict, d: int, x: float, T: float, t: float
) -> float:
    r, alpha, a, b = params.values()

    def integrand(p: float) -> float:
        log_density = (a - 1) * np.log(p) + (b + x + d - 1) * np.log1p(-p) - betaln(a, b + x + d)
        gain = -np.expm1(-(r + x) * np.log1p(p * t / (alpha + T))) / p
        return gain * np.exp(log_density)

    return integrate.quad(integrand, 0, 1, epsabs=0, epsrel=1e-12, limit=200)[0]


def test_large_frequency_is_stable() -> None:
    heavy = pd.DataFrame(
        {"frequency": [500, 500, 2], "recency": [38.0, 20.0, 30.43], "T": [38.86] * 3}
    )
    x, t_x, T = heavy.to_numpy(dtype=float).T
    for name, (cls, params) in MODELS_AT_FIXED_PARAMS.items():
        model = with_params(cls, **params)
        p_alive = model.prob_alive(heavy)
        assert np.isfinite(p_alive).all() and ((p_alive >= 0) & (p_alive <= 1)).all(), name
        assert np.isfinite(model.predict_purchases(heavy, 39)).all(), name
    # BG/NBD and MBG/NBD: E[Y(t) | alive] = E[(1 - (1 + p t/(alpha+T))^-(r+x)) / p] over the
    # posterior p ~ Beta(a, b+x+d), integrated numerically instead of the hypergeometric series.
    for cls, params, d in [(BetaGeo, BGNBD, 0), (ModifiedBetaGeo, MBGNBD, 1)]:
        model = with_params(cls, **params)
        ref = [_bg_expected_if_alive_by_quadrature(params, d, xi, Ti, 39.0) for xi, Ti in zip(x, T)]
        np.testing.assert_allclose(
            model.predict_purchases(heavy, 39), model.prob_alive(heavy) * np.array(ref), rtol=1e-9
        )
    # Pareto/NBD log-likelihood at x = 500: the death-time integral by quadrature.
    r, alpha, s, beta = PARETO.values()
    model = ParetoNBD()
    ours = model._log_likelihood(
        np.array([r, alpha, s, beta]), model._precompute(model._prepare(heavy, fit=True))
    )
    for xi, txi, Ti, ll in zip(x, t_x, T, ours, strict=True):
        p = r + xi
        log_scale = -p * np.log(alpha + txi) - (s + 1) * np.log(beta + txi)
        death = integrate.quad(
            lambda u, p=p, txi=txi: np.exp(
                -p * np.log((alpha + u) / (alpha + txi))
                - (s + 1) * np.log((beta + u) / (beta + txi))
            ),
            txi,
            Ti,
            epsabs=0,
            epsrel=1e-13,
        )[0]
        log_alive = -p * np.log(alpha + Ti) - s * np.log(beta + Ti)
        bracket = np.logaddexp(log_alive, np.log(s * death) + log_scale)
        ref = gammaln(p) - gammaln(r) + r * np.log(alpha) + s * np.log(beta) + bracket
        assert ll == pytest.approx(ref, rel=1e-11)


def test_fit_is_stable_with_a_customer_of_frequency_500(cdnow: pd.DataFrame) -> None:
    heavy = pd.DataFrame(
        {"frequency": [500], "recency": [38.0], "T": [38.86], "monetary_value": [20.0]},
        index=pd.Index([-1], name="customer_id"),
    )
    data = pd.concat([cdnow, heavy])
    for cls in (BetaGeo, ModifiedBetaGeo, ParetoNBD, GammaGamma):
        model = cls().fit(data)
        assert model.convergence_.success and np.isfinite(model.log_likelihood_), cls.__name__


# --- invariants -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bgnbd", "mbgnbd", "pareto", "bgbb"])
def test_predict_purchases_is_zero_at_zero_and_increases_with_t(
    name: str, fitted: dict, cdnow: pd.DataFrame, donations: pd.DataFrame
) -> None:
    model = fitted[name]
    summary = donations if name == "bgbb" else cdnow
    horizons = [0, 1, 2, 5, 10] if name == "bgbb" else [0.0, 0.5, 4.0, 39.0, 100.0, 520.0]
    curves = np.array([model.predict_purchases(summary, t) for t in horizons])
    assert (curves[0] == 0).all()
    assert (np.diff(curves, axis=0) > 0).all()


@pytest.mark.parametrize("name", ["bgnbd", "mbgnbd", "pareto"])
def test_prob_alive_is_a_probability_and_one_without_repeats_for_bgnbd(
    name: str, fitted: dict, cdnow: pd.DataFrame
) -> None:
    p = fitted[name].prob_alive(cdnow)
    assert ((p >= 0) & (p <= 1)).all()
    one_timers = (cdnow["frequency"] == 0).to_numpy()
    if name == "bgnbd":
        assert (p[one_timers] == 1).all()
    else:
        assert (p[one_timers] < 1).all()
    rate = fitted[name].posterior_purchase_rate(cdnow)
    assert (rate > 0).all()


@pytest.mark.parametrize("name", ["bgnbd", "mbgnbd", "pareto", "bgbb"])
def test_prob_n_purchases_sums_to_one_and_its_mean_is_expected_purchases(
    name: str, fitted: dict
) -> None:
    model = fitted[name]
    for t in [1, 3, 6] if name == "bgbb" else [1.0, 39.0, 78.0]:
        n = np.arange(t + 1 if name == "bgbb" else 400)
        pmf = model.prob_n_purchases(n, t)
        assert (pmf >= 0).all()
        assert pmf.sum() == pytest.approx(1.0, abs=1e-9)
        assert (n * pmf).sum() == pytest.approx(model.expected_purchases(t), rel=1e-8)
    assert isinstance(model.prob_n_purchases(0, 6), float)


def test_expected_purchases_is_the_mean_of_new_customers_conditional_expectation(
    fitted: dict,
) -> None:
    new = pd.DataFrame({"frequency": [0], "recency": [0.0], "T": [0.0]})
    for name in ("bgnbd", "mbgnbd", "pareto"):
        model = fitted[name]
        assert model.predict_purchases(new, 39)[0] == pytest.approx(
            model.expected_purchases(39), rel=1e-12
        )


def test_estimators_follow_the_sklearn_contract(cdnow: pd.DataFrame) -> None:
    for cls in (BetaGeo, ModifiedBetaGeo, ParetoNBD, BetaGeoBetaBinom, GammaGamma):
        model = cls(penalizer_coef=0.01, maxiter=200, tol=1e-7)
        copy = clone(model)
        assert copy.get_params() == {"penalizer_coef": 0.01, "maxiter": 200, "tol": 1e-7}
        assert copy.set_params(penalizer_coef=0.0).penalizer_coef == 0.0
        assert not hasattr(copy, "params_")
    model = BetaGeo()
    assert model.fit(cdnow) is model


def test_fit_is_deterministic(cdnow: pd.DataFrame) -> None:
    shuffled = cdnow.sample(frac=1.0, random_state=3)
    for cls in (BetaGeo, ParetoNBD):
        first, second, third = cls().fit(cdnow), cls().fit(cdnow), cls().fit(shuffled)
        assert first.params_ == second.params_
        assert first.log_likelihood_ == second.log_likelihood_
        for name, value in first.params_.items():
            assert third.params_[name] == pytest.approx(value, rel=1e-9)


def test_weights_equal_repeated_rows(donations: pd.DataFrame, cdnow: pd.DataFrame) -> None:
    expanded = donations.loc[donations.index.repeat(donations["count"])].drop(columns="count")
    compressed = BetaGeoBetaBinom().fit(donations, weights=donations["count"].to_numpy())
    long = BetaGeoBetaBinom().fit(expanded.reset_index(drop=True))
    assert long.n_customers_ == 11_104
    assert long.log_likelihood_ == pytest.approx(compressed.log_likelihood_, rel=1e-12)
    for name, value in compressed.params_.items():
        assert long.params_[name] == pytest.approx(value, rel=1e-7)
    doubled = BetaGeo().fit(cdnow, weights=np.full(len(cdnow), 2.0))
    single = BetaGeo().fit(cdnow)
    assert doubled.log_likelihood_ == pytest.approx(2 * single.log_likelihood_, rel=1e-10)
    assert doubled.params_["r"] == pytest.approx(single.params_["r"], rel=1e-7)


def test_penalizer_shrinks_the_parameters(cdnow: pd.DataFrame) -> None:
    free = BetaGeo().fit(cdnow)
    penalized = BetaGeo(penalizer_coef=0.1).fit(cdnow)
    assert sum(v**2 for v in penalized.params_.values()) < sum(v**2 for v in free.params_.values())
    assert penalized.log_likelihood_ < free.log_likelihood_


# --- input errors ---------------------------------------------------------------------------------


def bad(frame: dict, index: list | None = None) -> pd.DataFrame:
    base = {
        "frequency": [0, 2, 1],
        "recency": [0.0, 30.0, 5.0],
        "T": [38.0, 38.0, 20.0],
        "monetary_value": [0.0, 20.0, 15.0],
    }
    base.update(frame)
    return pd.DataFrame(base, index=pd.Index(index or ["a1", "b2", "c3"], name="customer_id"))


@pytest.mark.parametrize(
    ("cls", "frame", "words"),
    [
        (GammaGamma, {"monetary_value": [0.0, 20.0, -3.0]}, ["monetary_value <= 0", "'c3'"]),
        (GammaGamma, {"monetary_value": [0.0, 0.0, 15.0]}, ["monetary_value <= 0", "'b2'"]),
        (BetaGeo, {"T": [0.0, 38.0, 20.0]}, ["T <= 0", "'a1'", "drop"]),
        (ParetoNBD, {"recency": [0.0, 40.0, 5.0]}, ["recency > T", "'b2'", "recency=40.0"]),
        (BetaGeo, {"recency": [0.0, np.nan, 5.0]}, ["'recency'", "NaN", "'b2'"]),
        (ModifiedBetaGeo, {"frequency": [0, 2.5, 1]}, ["non-integer frequency", "'b2'"]),
        (BetaGeo, {"recency": [3.0, 30.0, 5.0]}, ["frequency = 0 but recency", "'a1'"]),
        (
            BetaGeoBetaBinom,
            {"frequency": [0, 5, 1], "recency": [0, 5, 1], "T": [6, 4, 6]},
            ["frequency > T", "'b2'", "frequency=5"],
        ),
    ],
)
def test_bad_input_names_table_column_and_an_example_customer(
    cls: type, frame: dict, words: list[str]
) -> None:
    with pytest.raises(ModelInputError) as info:
        cls().fit(bad(frame))
    message = str(info.value)
    assert message.startswith("btyd summary:")
    for word in words:
        assert word in message, (word, message)


def test_missing_columns_are_listed() -> None:
    with pytest.raises(ModelInputError, match=r"btyd summary: missing column\(s\) 'T'"):
        BetaGeo().fit(pd.DataFrame({"frequency": [1], "recency": [1.0]}))
    with pytest.raises(ModelInputError, match=r"'T' or 'n_periods'"):
        BetaGeoBetaBinom().fit(pd.DataFrame({"frequency": [1], "recency": [1]}))
    with pytest.raises(ModelInputError, match="monetary_value"):
        GammaGamma().fit(pd.DataFrame({"frequency": [1]}))


def test_optimizer_that_does_not_converge_says_how_to_fix_it(cdnow: pd.DataFrame) -> None:
    with pytest.raises(ModelFitError) as info:
        ParetoNBD(maxiter=1).fit(cdnow)
    message = str(info.value)
    assert "did not converge" in message and "maxiter" in message and "penalizer" in message
    assert isinstance(info.value, CrmModelsError)


def test_predictions_need_a_fitted_model() -> None:
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        BetaGeo().predict_purchases(CUSTOMERS, 10)


def test_unidentified_model_is_an_error_not_garbage() -> None:
    # Every customer buys at the same Poisson rate and none drops out: r and alpha run off to
    # infinity together, a to 0 (no dropout); the MLE is not a point and the fit says so.
    rng = np.random.default_rng(0)
    T = rng.uniform(10, 40, 300).round(1)
    steady = pd.DataFrame({"frequency": np.maximum(rng.poisson(T * 0.5), 1), "recency": T, "T": T})
    with pytest.raises(ModelFitError, match="at 0 or infinity.*penalizer"):
        BetaGeo().fit(steady)
    with pytest.raises(ModelInputError, match="no customer has frequency > 0"):
        ParetoNBD().fit(steady.assign(frequency=0, recency=0.0))


def test_numerical_gradient_path_reaches_the_same_optimum(cdnow: pd.DataFrame) -> None:
    # The base class differentiates numerically when a model has no analytic gradient.
    class NumericBetaGeo(BetaGeo):
        _has_gradient = False

    analytic, numeric = BetaGeo().fit(cdnow), NumericBetaGeo().fit(cdnow)
    for name, value in analytic.params_.items():
        assert numeric.params_[name] == pytest.approx(value, rel=1e-5)
    np.testing.assert_allclose(numeric.summary()["se"], analytic.summary()["se"], rtol=1e-3)


def test_log_likelihood_at_given_parameters_matches_the_fit(
    fitted: dict, cdnow: pd.DataFrame
) -> None:
    for name in ("bgnbd", "pareto", "gamma_gamma"):
        model = fitted[name]
        assert model.log_likelihood(cdnow) == pytest.approx(model.log_likelihood_, rel=1e-12)
        moved = {k: v * 1.05 for k, v in model.params_.items()}
        assert model.log_likelihood(cdnow, params=moved) < model.log_likelihood_
    # FHL 2005 at the published (rounded) estimates: -9582.4.
    assert round(BetaGeo().log_likelihood(cdnow, params=BGNBD), 1) == -9582.4


# --- the fitting machinery on large tables --------------------------------------------------------


def _compressed(model: BetaGeo, summary: pd.DataFrame) -> dict:
    rows, w = compress(model._prepare(summary, fit=True), np.ones(len(summary)))
    return model._precompute(rows | {"weights": w})


@pytest.mark.parametrize("cls", [BetaGeo, ModifiedBetaGeo])
def test_bgnbd_analytic_hessian_equals_finite_differences_of_the_gradient(
    cls: type, cdnow: pd.DataFrame
) -> None:
    model = cls()
    data = _compressed(model, cdnow)
    for params in ([0.243, 4.414, 0.793, 2.426], [2.08, 6.5, 0.69, 18.3], [0.5, 1.0, 3.0, 0.7]):
        params = np.array(params)
        _, grad, hessian = model._log_likelihood(params, data, gradient=True, hessian=True)
        assert grad == pytest.approx(model._log_likelihood(params, data, gradient=True)[1])
        numeric = np.empty((4, 4))
        for j in range(4):
            step = np.zeros(4)
            step[j] = 1e-5 * params[j]
            up = model._log_likelihood(params + step, data, gradient=True)[1]
            down = model._log_likelihood(params - step, data, gradient=True)[1]
            numeric[:, j] = (up - down) / (2 * step[j])
        np.testing.assert_allclose(hessian, hessian.T, rtol=0, atol=0)
        np.testing.assert_allclose(hessian, numeric, rtol=1e-6, atol=1e-8 * np.abs(hessian).max())


def _draw_bgnbd(n: int, seed: int) -> pd.DataFrame:
    """Customers drawn from BG/NBD at FHL (2005)'s estimates, continuous time (distinct rows)."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(27, 39, n)
    n_T = rng.poisson(rng.gamma(0.243, 1 / 4.414, n) * T)
    x = np.minimum(n_T, rng.geometric(rng.beta(0.793, 2.426, n)))
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), n_T - x + 1), 0.0)
    return pd.DataFrame({"frequency": x, "recency": t_x, "T": T})


def test_subsample_start_and_newton_polish_reach_the_plain_optimum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On many distinct rows the fit starts from a subsample's optimum and takes Newton steps on
    # all rows (analytic Hessian for BG/NBD, the subsample's and finite differences otherwise);
    # on a table small enough for both routes they agree with L-BFGS-B on all rows.
    summary = _draw_bgnbd(12_000, seed=5)
    rng = np.random.default_rng(6)
    spend = pd.DataFrame({"frequency": rng.poisson(2, 12_000) + 1})
    nu = rng.gamma(6.25, 1 / 3.74, len(spend))
    spend["monetary_value"] = rng.gamma(2.1 * spend["frequency"], 1 / (nu * spend["frequency"]))
    cases = [(BetaGeo, summary), (ModifiedBetaGeo, summary), (ParetoNBD, summary)]
    cases.append((GammaGamma, spend))
    plain = {cls: cls().fit(data) for cls, data in cases}
    monkeypatch.setattr(btyd_base, "_SUBSAMPLE_ABOVE", 5_000)
    monkeypatch.setattr(btyd_base, "_SUBSAMPLE_ROWS", 1_500)
    for cls, data in cases:
        polished, reference = cls().fit(data), plain[cls]
        report = polished.convergence_
        assert "Newton step(s) on all rows" in report.message, report.message
        assert "then L-BFGS-B" not in report.message, report.message  # no fallback needed
        assert report.success and report.gradient_norm < 1e-8
        assert report.function_evaluations < reference.convergence_.function_evaluations
        assert polished.log_likelihood_ == pytest.approx(reference.log_likelihood_, abs=1e-6)
        for name, value in reference.params_.items():
            assert polished.params_[name] == pytest.approx(value, rel=1e-5), (cls, name)
            assert polished.standard_errors_[name] == pytest.approx(
                reference.standard_errors_[name], rel=1e-4
            )


def test_compress_merges_equal_rows_in_an_order_of_their_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = np.array([0.0, 2.0, 0.0, 2.0, 1.0, 0.0, 2.0])
    t_x = np.array([0.0, 5.0, -0.0, 5.0, 3.0, 0.0, 4.0])  # -0.0 equals 0.0
    T = np.array([10.0, 9.0, 10.0, 9.0, 8.0, 7.0, 9.0])
    w = np.arange(1.0, 8.0)
    rows, counts = compress({"x": x, "t_x": t_x, "T": T}, w)
    got = {(a, b, c): n for a, b, c, n in zip(rows["x"], rows["t_x"], rows["T"], counts)}
    assert got == {
        (0.0, 0.0, 10.0): 1 + 3,
        (2.0, 5.0, 9.0): 2 + 4,
        (1.0, 3.0, 8.0): 5,
        (0.0, 0.0, 7.0): 6,
        (2.0, 4.0, 9.0): 7,
    }
    order = np.array([6, 3, 0, 5, 1, 4, 2])
    again, counts_again = compress({"x": x[order], "t_x": t_x[order], "T": T[order]}, w[order])
    for key in rows:
        np.testing.assert_array_equal(np.abs(again[key]), np.abs(rows[key]))
    np.testing.assert_array_equal(counts_again, counts)
    # Rows are grouped by a 64-bit hash; different rows sharing one are still told apart.
    monkeypatch.setattr(btyd_base, "_row_hash", lambda cols: np.zeros(len(cols[0]), np.uint64))
    first, inverse = group_rows([x, t_x, T])
    assert len(first) == 5
    for col in (x, t_x, T):
        np.testing.assert_array_equal(col[first][inverse], col)


def test_pareto_series_term_by_term_equals_the_matrix_summation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Short series are summed by a recurrence over rows, long ones as (rows x terms) matrices;
    # on the same rows both give log S and its derivatives to rounding.
    from crm_models.models.clv import pareto_nbd

    rng = np.random.default_rng(2)
    n = 4_000
    B = rng.uniform(0.2, 30.0, n)
    B[:500] = 501.0  # large frequency
    C = B + rng.uniform(0.5, 5.0, n)
    z = np.concatenate([rng.uniform(0.0, 0.3, n // 2), rng.uniform(0.3, 0.97, n - n // 2)])
    z[:3] = 0.0
    short = pareto_nbd._euler_series(B, C, z, gradient=True)
    monkeypatch.setattr(pareto_nbd, "_RECURRENCE_UP_TO", 0)
    matrix = pareto_nbd._euler_series(B, C, z, gradient=True)
    np.testing.assert_allclose(short[0], matrix[0], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(short[1], matrix[1], rtol=1e-11, atol=1e-13)
    # and S itself against scipy's 2F1 where that is finite and accurate (moderate z)
    from scipy.special import hyp2f1

    mid = (z > 0) & (z < 0.6) & (B < 100)
    np.testing.assert_allclose(
        np.exp(short[0][mid]), hyp2f1(1.0, B[mid], C[mid], z[mid]), rtol=1e-12
    )
