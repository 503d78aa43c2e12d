"""Metrics and plots for survival churn models, computed on held-out customers."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # plots are files for MLflow, never windows

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index


def harrell_c_index(duration: Any, event: Any, risk: Any) -> float:
    """Harrell's concordance: the share of comparable pairs ordered correctly by ``risk``.

    lifelines' ``concordance_index`` expects predicted *times* (higher = later), so minus the risk.
    """
    return float(concordance_index(np.asarray(duration), -np.asarray(risk), np.asarray(event)))


def plot_km_by_segment(
    duration: Any, event: Any, segment: Any, title: str = "Kaplan-Meier by segment",
    max_segments: int = 8,
) -> plt.Figure:
    """Kaplan-Meier survival curves with 95% confidence bands, one per segment."""
    df = pd.DataFrame({"d": np.asarray(duration), "e": np.asarray(event), "s": np.asarray(segment)})
    top = df["s"].value_counts().index[:max_segments]
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in sorted(top, key=str):
        part = df[df["s"] == name]
        KaplanMeierFitter(label=f"{name} (n={len(part):,})").fit(part["d"], part["e"]).plot_survival_function(
            ax=ax, ci_show=True
        )
    ax.set_xlabel("days since cutoff")
    ax.set_ylabel("share not churned")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small", ncol=2)
    fig.tight_layout()
    return fig


def plot_risk_distribution(risk: Any, event: Any, title: str = "Predicted risk") -> plt.Figure:
    """Histogram of predicted risk for customers who churned vs were censored."""
    risk, event = np.asarray(risk, dtype=float), np.asarray(event).astype(bool)
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.histogram_bin_edges(risk, bins=40)
    ax.hist(risk[~event], bins=bins, alpha=0.6, label=f"censored (n={(~event).sum():,})")
    ax.hist(risk[event], bins=bins, alpha=0.6, label=f"churned (n={event.sum():,})")
    ax.set_xlabel("risk (log partial hazard)")
    ax.set_ylabel("customers")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig
