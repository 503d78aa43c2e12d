# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Retention priorities: whom to act on first, why, and how
#
# **The question.** The retention team can call a few hundred customers this month. Who should
# they be? Not simply the likeliest to leave (many of them are worth little), nor simply the
# most valuable (most of them are staying anyway), but those whose departure would cost the
# most: **value at risk = P(churn within 180 days) x expected value over the next 12 months**.
#
# **The data.** 20,000 simulated customers, scored on the last day of the data. The churn model
# is a Cox model of *subscription ends* (contractual churn: the subscriber leaves, so the
# population is the active subscribers), fitted six months earlier on the subscriptions that
# ended since. The value is BG/NBD + Gamma-Gamma (see `03_clv_cdnow`): expected purchases x
# expected spend over 12 months, discounted at 10% a year. Nothing after the scoring day is read.
#
# **What each customer gets.** Churn probability, CLV, value at risk, RFM segment and lifecycle
# stage, the three strongest churn reasons (SHAP of the Cox model) and an action tier:
#
# 1. `save_now`: in the top 10% by value at risk *and* churn probability >= 0.2;
# 2. `let_go`: churn probability >= 0.2 and CLV below the median (a save costs more than it
#    returns);
# 3. `nurture`: CLV at or above the median (valuable: keep them close);
# 4. `monitor`: everyone else (likely to stay, low value).
#
# The thresholds are in `configs/retention.yaml` (`retention.tiers`).

# %%
import os

# this notebook's own MLflow store and simulated data live under notebooks/ (gitignored)
os.environ["MLFLOW_TRACKING_URI"] = "sqlite:///mlruns/mlflow.db"

import pandas as pd
from IPython.display import display

from crm_models.config import load_config
from crm_models.experiment import run_experiment

# %matplotlib inline

# %%
result = run_experiment(load_config("../configs/retention.yaml"), progress=False)
m, a = result.metrics, result.artifacts

# %% [markdown]
# ## The ranked list
#
# `tables/retention_priorities.parquet` in the run (customer ids pseudonymized there), highest
# value at risk first. The reasons are the features that push each customer's risk up most.

# %%
priorities = a.customer_tables["tables/retention_priorities.parquet"]
priorities[[
    "priority", "value_at_risk", "churn_probability", "clv", "action_tier", "rfm_segment",
    "lifecycle_stage", "reason_1", "reason_2", "reason_3",
]].head(10).round(3)

# %%
a.tables["tables/tier_summary.csv"].set_index("action_tier").round(3)

# %% tags=["keep_output"]
# NBVAL_CHECK_OUTPUT
print(f"active subscribers scored: {m['n_customers']:,.0f}")
print(f"value at risk: {m['total_value_at_risk'] / 1e3:,.0f}k of {m['total_clv'] / 1e3:,.0f}k expected value")
print(f"top 10% of customers hold {m['value_at_risk_share_top_decile']:.0%} of it; "
      f"{m['n_customers_80pct_value_at_risk']:,.0f} customers hold 80%")
print("tiers:", {t: int(m[f"n_tier.{t}"]) for t in ("save_now", "nurture", "monitor", "let_go")})

# %% [markdown]
# ## Where the value at risk sits
#
# Most of it is with the best customers (RFM champions, loyal lifecycle stage): few leave, but
# each departure is expensive. The curve tells how many calls buy how much protection.

# %%
display(a.figures["plots/value_at_risk_by_segment.png"])
display(a.figures["plots/cumulative_value_at_risk.png"])

# %% [markdown]
# ## Does ranking by value at risk find the customers whose loss costs most?
#
# The simulator knows each customer's true purchase rate, mean spend and dropout hazard, so
# the true lost value over the next 12 months is known (`experiment.true_lost_value`):
# *expected* = rate x spend x the expected time lost to a dropout under the true hazard;
# *realized* = rate x spend x the time lost to the simulated dropout. Each ranking is judged by
# the share of that loss held by its top 10% ("perfect" ranks by the truth itself).

# %%
rankings = ["value_at_risk", "churn_probability", "clv", "perfect"]
pd.DataFrame({
    "expected lost value": [m[f"truth.capture_top_decile.{r}"] for r in rankings],
    "realized lost value": [m[f"truth.realized.capture_top_decile.{r}"] for r in rankings],
}, index=rankings).round(3)

# %% tags=["keep_output"]
# NBVAL_CHECK_OUTPUT
capture = {r: m[f"truth.capture_top_decile.{r}"] for r in rankings}
assert capture["value_at_risk"] > max(capture["clv"], capture["churn_probability"])
print("share of the expected lost value in the top decile: " + ", ".join(
    f"{r} {capture[r]:.2f}" for r in rankings))

# %%
display(a.figures["plots/truth_capture.png"])

# %% [markdown]
# **What it means.** Churn probability alone wastes most calls on subscribers who are about to
# leave but were worth little. CLV alone is a strong baseline, since value varies far more
# between customers than risk does, and value at risk adds what CLV misses: which of the
# valuable customers are actually at risk. `tests/test_retention.py` checks this on the
# simulator; on seeds 1-8 value at risk beat CLV by 0.015 to 0.038 in this share.
#
# ## Using a churn model from another run
#
# A churn model already tuned and logged (`crm-models run configs/churn_contractual.yaml`) can
# be reused as it is: `retention.churn_run_id` loads the run's pyfunc and scores the customers
# on the same day, with the run's churn definition and feature window.

# %%
churn = run_experiment(
    load_config("../configs/churn_contractual.yaml", ["explain.enabled=false"]), progress=False
)
reused = run_experiment(
    load_config("../configs/retention.yaml", [f"retention.churn_run_id={churn.run_id}"]),
    progress=False,
)

# %% tags=["keep_output"]
# NBVAL_CHECK_OUTPUT
r = reused.metrics
assert r["n_customers"] == m["n_customers"]
print(f"churn model from run: held-out C-index {churn.metrics['c_index']:.2f}")
print(f"same {r['n_customers']:,.0f} subscribers; top-decile share of expected lost value: "
      f"value at risk {r['truth.capture_top_decile.value_at_risk']:.2f}, "
      f"CLV {r['truth.capture_top_decile.clv']:.2f}")

# %% [markdown]
# ## A warning: inactivity churn is not departure
#
# Without subscriptions, "churn" usually means *no purchase for 90 days*. Multiplying that
# probability by CLV goes wrong: a customer who buys every four months is very likely to go 90
# days without buying while staying loyal, so the churn probability mostly measures how rarely
# someone buys, and value at risk ranks rare, low-value buyers first. On the same simulator:

# %%
inactivity = run_experiment(
    load_config("../configs/retention.yaml", ["features.churn=noncontractual", "explain.enabled=false"]),
    progress=False,
)

# %% tags=["keep_output"]
# NBVAL_CHECK_OUTPUT
i = inactivity.metrics
print(f"customers active in the last 90 days: {i['n_customers']:,.0f}")
print("top-decile share of expected lost value: " + ", ".join(
    f"{r} {i[f'truth.capture_top_decile.{r}']:.2f}" for r in rankings))
print(f"normalized Gini of the churn-probability ranking: "
      f"{i['truth.normalized_gini.churn_probability']:.2f} (below 0: worse than random)")

# %% [markdown]
# Here CLV alone is the better list. Value at risk needs a churn event that means the value
# stream ends (a cancelled subscription, a closed account); with inactivity churn, rank by CLV
# and use the churn model's reasons to choose the action.
