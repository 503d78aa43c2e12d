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
# # 01 · Quickstart: simulate, run, look
#
# **The question.** `crm_models` answers four questions on CRM tables: who will leave and when
# (survival churn), what each customer is worth (CLV), which channels earned the customers
# (attribution and budget) and whom to act on first (value at risk). Every answer is an
# *experiment*: a YAML config in `configs/`, run by one function (or `crm-models run CONFIG`),
# tracked in MLflow.
#
# **The data.** A simulator writes the six contract tables (transactions, customers,
# touchpoints, channel spend, tickets, subscriptions) from a known generative model, and keeps
# the truth beside them: every customer's purchase rate, mean spend, dropout hazard and
# dropout date. Models are checked against that truth. Here: 5,000 simulated customers.
#
# **What you will see.** The main job (a penalized Cox churn model) run end to end, its headline
# numbers next to the simulator's ceiling, and where everything lands in MLflow.

# %%
import os

# this notebook's own MLflow store and simulated data live under notebooks/ (gitignored)
os.environ["MLFLOW_TRACKING_URI"] = "sqlite:///mlruns/mlflow.db"

import mlflow
import pandas as pd
from IPython.display import display

from crm_models.config import load_config
from crm_models.data.synthetic import ensure_synthetic, load_synthetic
from crm_models.experiment import run_experiment

# %matplotlib inline

# %% [markdown]
# ## 1. Simulate
#
# `ensure_synthetic` simulates once and reuses the files afterwards (same size, seed and
# simulator version).

# %%
data = load_synthetic(ensure_synthetic("data/synthetic", n_customers=5000, seed=7))
pd.Series({name: len(table) for name, table in data.tables.items()}, name="rows")

# %%
data.tables["transactions"].head()

# %% [markdown]
# The ground truth is what no real data set gives you: per customer, the true purchase rate
# (per day), the mean spend per purchase and the dropout date (which may lie after the end of
# the observed data).

# %%
truth = pd.DataFrame(data.ground_truth["customers"])
truth[["customer_id", "signup_ts", "purchase_rate", "spend_mean", "dropout_hazard", "dropout_ts"]].head()

# %% [markdown]
# ## 2. Run the main job
#
# `configs/churn_survival.yaml` defines churn as *no purchase for 90 days*, builds point-in-time
# features (RFM, purchase behaviour, tickets, attributes) at a cutoff 180 days before the end of
# the data, labels what happens in the 180 days after it, and fits a penalized Cox model on 70%
# of the customers. `--set`-style overrides shrink it to our 5,000 customers.

# %%
config = load_config("../configs/churn_survival.yaml", ["data.synthetic.customers=5000"])
print(config.resolved_yaml()[:600])

# %%
result = run_experiment(config, progress=False)

# %% [markdown]
# **What the numbers mean.** The C-index is the probability that, of two held-out customers,
# the model ranks the one who churns first as riskier (0.5 = a coin, 1 = perfect). The
# simulator's *oracle* scores the same customers with their true purchase rates and dropout
# hazards: the best any model could do on these labels. A model close to the oracle has little
# left to learn from these features.

# %% tags=["keep_output"]
# NBVAL_CHECK_OUTPUT
m = result.metrics
assert 0.70 < m["c_index"] <= m["oracle_c_index"]
print(f"customers at risk at the cutoff: {m['n_customers']:,.0f} (test {m['n_test']:,.0f})")
print(f"churned within 180 days: {m['event_rate']:.0%}")
print(f"C-index {m['c_index']:.2f}, oracle {m['oracle_c_index']:.2f}")

# %% [markdown]
# ## 3. Where to look in MLflow
#
# Every run logs its resolved config, a fingerprint of the data, package versions and the git
# commit, its metrics, plots, tables (customer ids pseudonymized with a salted hash) and the
# fitted model as an MLflow pyfunc. Browse them with `crm-models ui` (run it from `notebooks/`
# to see this notebook's store, or set `MLFLOW_TRACKING_URI=sqlite:///notebooks/mlruns/mlflow.db`).

# %%
client = mlflow.MlflowClient()
run = client.get_run(result.run_id)
print("run", run.info.run_id, "in experiment", run.info.experiment_id, "of", mlflow.get_tracking_uri())
print("tags:", {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")})
for folder in ("config", "provenance", "plots", "tables", ""):
    print(folder or "(top)", [f.path for f in client.list_artifacts(result.run_id, folder or None)])

# %% [markdown]
# The plots are also returned in memory: the Kaplan-Meier curves of held-out customers by RFM
# segment show how differently the segments churn after the cutoff.

# %%
display(result.artifacts.figures["plots/km_by_segment.png"])

# %% [markdown]
# Next: `02_churn_survival` (why customers leave), `03_clv_cdnow` (what they are worth),
# `04_attribution_budget` (which channels earned them), `05_retention_priorities` (whom to call
# first).
