"""Attribution models: hand-computed answers on small path tables (arithmetic in the comments),
an independent dense Markov computation, the full Shapley sum, invariants and bootstrap intervals."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from crm_models.errors import ConfigError, DataError
from crm_models.features.paths import encode_paths
from crm_models.models.attribution import (
    HEURISTIC_METHODS,
    bootstrap_attribution,
    coalition_table,
    heuristic_attribution,
    markov_attribution,
    shapley_attribution,
    transition_matrix,
)


def _paths(rows: list[tuple]) -> pd.DataFrame:
    cols = ["path", "conversions", "nulls", "value"][: len(rows[0])]
    return pd.DataFrame(rows, columns=cols)


def _conv(result: pd.DataFrame) -> dict[str, float]:
    return dict(zip(result["channel"], result["conversions"]))


# Four paths; d never converts. 4 conversions, value 140.
HEURISTIC_TABLE = _paths(
    [
        ("a > b > c", 2, 1, 100.0),
        ("c > a", 1, 0, 30.0),
        ("b", 1, 3, 10.0),
        ("d > b", 0, 5, 0.0),
    ]
)


@pytest.mark.parametrize(
    ("method", "expected", "expected_value"),
    [
        # first: a <- path 1 (2, 100), c <- path 2 (1, 30), b <- path 3 (1, 10)
        ("first", {"a": 2, "b": 1, "c": 1, "d": 0}, {"a": 100, "b": 10, "c": 30, "d": 0}),
        # last: c <- path 1, a <- path 2, b <- path 3
        ("last", {"a": 1, "b": 1, "c": 2, "d": 0}, {"a": 30, "b": 10, "c": 100, "d": 0}),
        # linear: path 1 gives 2/3 each, path 2 1/2 each, path 3 1 to b
        (
            "linear",
            {"a": 2 / 3 + 1 / 2, "b": 2 / 3 + 1, "c": 2 / 3 + 1 / 2, "d": 0},
            {"a": 100 / 3 + 15, "b": 100 / 3 + 10, "c": 100 / 3 + 15, "d": 0},
        ),
        # position 40/20/40: path 1 -> a .8, b .4, c .8; path 2 (2 touches) -> .5/.5; path 3 b 1
        (
            "position",
            {"a": 0.8 + 0.5, "b": 0.4 + 1, "c": 0.8 + 0.5, "d": 0},
            {"a": 40 + 15, "b": 20 + 10, "c": 40 + 15, "d": 0},
        ),
    ],
)
def test_heuristics_by_hand(method: str, expected: dict, expected_value: dict) -> None:
    out = heuristic_attribution(HEURISTIC_TABLE, method)
    assert list(out.columns) == ["channel", "conversions", "value", "share"]
    assert out["channel"].tolist() == ["a", "b", "c", "d"]
    assert _conv(out) == pytest.approx(expected, abs=1e-12)
    assert dict(zip(out["channel"], out["value"])) == pytest.approx(expected_value, abs=1e-12)
    assert out["share"].tolist() == pytest.approx([expected[c] / 4 for c in "abcd"], abs=1e-12)


def test_time_decay_on_a_path_table_counts_touches() -> None:
    # half_life = 1 touch. path 1: 2^-2, 2^-1, 1 = (1/7, 2/7, 4/7) x 2 conversions;
    # path 2: c 2^-1, a 1 -> (1/3, 2/3); path 3: b 1.
    out = heuristic_attribution(HEURISTIC_TABLE, "time_decay", half_life=1.0)
    assert _conv(out) == pytest.approx(
        {"a": 2 / 7 + 2 / 3, "b": 4 / 7 + 1, "c": 8 / 7 + 1 / 3, "d": 0}, abs=1e-12
    )


def test_time_decay_on_journeys_uses_days_before_conversion() -> None:
    day = pd.Timestamp("2024-01-01")
    journeys = pd.DataFrame(
        {
            "channels": [["a", "b"], ["b", "a", "c"], ["a"]],
            "timestamps": [
                [day + pd.Timedelta(days=3), day + pd.Timedelta(days=10)],
                [day, day + pd.Timedelta(days=7), day + pd.Timedelta(days=14)],
                [day],
            ],
            "converted": [True, True, False],
            "value": [30.0, 10.0, 0.0],
            "conversion_ts": [day + pd.Timedelta(days=10), day + pd.Timedelta(days=14), pd.NaT],
        }
    )
    # half-life 7 days. journey 1: ages 7, 0 -> weights 1/2, 1 -> a 1/3, b 2/3.
    # journey 2: ages 14, 7, 0 -> 1/4, 1/2, 1 (sum 7/4) -> b 1/7, a 2/7, c 4/7.
    out = heuristic_attribution(journeys, "time_decay", half_life=7.0)
    assert _conv(out) == pytest.approx(
        {"a": 1 / 3 + 2 / 7, "b": 2 / 3 + 1 / 7, "c": 4 / 7}, abs=1e-12
    )
    assert dict(zip(out["channel"], out["value"])) == pytest.approx(
        {"a": 10 + 20 / 7, "b": 20 + 10 / 7, "c": 40 / 7}, abs=1e-12
    )
    # the bootstrap keeps each journey's timing for time decay
    boot = bootstrap_attribution(journeys, "time_decay", n_boot=50, half_life=7.0)
    np.testing.assert_allclose(boot["share"], out["share"], rtol=1e-12)
    assert (boot["share_lower"] <= boot["share"]).all() and (
        boot["share"] <= boot["share_upper"]
    ).all()


def test_position_with_one_and_two_touches_and_custom_weights() -> None:
    t = _paths([("a", 1, 0), ("a > b", 1, 0), ("a > b > c > d", 1, 0)])
    # a: 1 + 1/2 + .4 ; b: 1/2 + .1 ; c: .1 ; d: .4
    assert _conv(heuristic_attribution(t, "position")) == pytest.approx(
        {"a": 1.9, "b": 0.6, "c": 0.1, "d": 0.4}, abs=1e-12
    )
    # (0.3, 0.4, 0.3): 2 touches -> 1/2 each; 4 touches -> .3, .2, .2, .3
    assert _conv(heuristic_attribution(t, "position", position_weights=(0.3, 0.4, 0.3))) == (
        pytest.approx({"a": 1.8, "b": 0.7, "c": 0.2, "d": 0.3}, abs=1e-12)
    )


# --------------------------------------------------------------------------- Markov


CLASSIC = _paths([("c1 > c2 > c3", 1, 0), ("c1", 0, 1), ("c2 > c3", 0, 1)])


def test_markov_order1_classic_three_paths_by_hand() -> None:
    # Transitions: start -> c1 2/3, start -> c2 1/3; c1 -> c2 1/2, c1 -> null 1/2; c2 -> c3 1;
    # c3 -> conversion 1/2, c3 -> null 1/2.
    # P(conv) = 2/3 * 1/2 * 1 * 1/2 + 1/3 * 1 * 1/2 = 1/6 + 1/6 = 1/3 (= 1 conversion / 3 paths)
    # without c1: 1/3 * 1/2 = 1/6 -> RE = 1/2 ; without c2 or c3: 0 -> RE = 1
    # shares: 0.5 / 2.5 = 0.2, 1 / 2.5 = 0.4, 0.4
    out = markov_attribution(CLASSIC)
    assert out["removal_effect"].tolist() == pytest.approx([0.5, 1.0, 1.0], abs=1e-12)
    assert out["share"].tolist() == pytest.approx([0.2, 0.4, 0.4], abs=1e-12)
    assert out["conversions"].sum() == pytest.approx(1.0)
    assert out.attrs["conversion_probability"] == pytest.approx(1 / 3, abs=1e-12)
    tm = transition_matrix(CLASSIC)
    assert tm.loc["(start)", "c1"] == pytest.approx(2 / 3)
    assert tm.loc["c1", "(null)"] == pytest.approx(1 / 2)
    assert tm.loc["c3", "(conversion)"] == pytest.approx(1 / 2)
    assert np.allclose(tm.sum(axis=1), 1.0)
    assert (
        list(tm.index)
        == list(tm.columns)
        == ["(start)", "c1", "c2", "c3", "(conversion)", "(null)"]
    )


# Memory matters: what precedes c decides whether it converts.
ORDER2 = _paths([("a > c", 3, 1, 300.0), ("b > c", 1, 3, 10.0), ("c", 0, 2, 0.0)])


def test_markov_order2_by_hand_and_against_order1() -> None:
    # Order 2 states (a) (b) (c) (a,c) (b,c): start -> a .4, b .4, c .2; (a,c) -> conv 3/4,
    # (b,c) -> conv 1/4, (c) -> null. P = .4*3/4 + .4*1/4 = .4.
    # without a: .4*1/4 = .1 -> RE .75 ; without b: .3 -> RE .25 ; without c: 0 -> RE 1.
    # shares .75/2, .25/2, 1/2 of 4 conversions -> 1.5, 0.5, 2.
    out = markov_attribution(ORDER2, order=2)
    assert out["removal_effect"].tolist() == pytest.approx([0.75, 0.25, 1.0], abs=1e-12)
    assert out["conversions"].tolist() == pytest.approx([1.5, 0.5, 2.0], abs=1e-12)
    # value chain: (a,c) pays 300/4 = 75 per journey, (b,c) 10/4 = 2.5: V = .4*75 + .4*2.5 = 31;
    # without a: 1 -> RE 30/31 ; without b: 30 -> RE 1/31 ; without c: RE 1 (sum 2)
    # value 310 -> a 150, b 5, c 155
    assert out["value_removal_effect"].tolist() == pytest.approx([30 / 31, 1 / 31, 1.0])
    assert out["value"].tolist() == pytest.approx([150.0, 5.0, 155.0], abs=1e-9)
    # Order 1 forgets the predecessor: c -> conv 4/10 whatever came before;
    # without a (or b): (.4 + .2) * .4 = .24 -> RE .4 ; without c: RE 1 -> shares 2/9, 2/9, 5/9
    first = markov_attribution(ORDER2, order=1)
    assert first["share"].tolist() == pytest.approx([2 / 9, 2 / 9, 5 / 9], abs=1e-12)
    tm = transition_matrix(ORDER2, order=2)
    assert tm.loc["a > c", "(conversion)"] == pytest.approx(0.75)
    assert tm.loc["b > c", "(conversion)"] == pytest.approx(0.25)
    # order 3 = order 2 here (no path is longer than 2)
    pd.testing.assert_frame_equal(
        markov_attribution(ORDER2, order=3),
        out,
        check_like=True,
        check_exact=False,
        atol=1e-12,
        check_flags=False,
    )


def test_markov_order1_two_channels_with_a_cycle() -> None:
    t = _paths([("a > b", 2, 0), ("a", 0, 2), ("b > a", 1, 1)])
    # a -> b 2/6, a -> conv 1/6, a -> null 3/6 ; b -> conv 1/2, b -> a 1/2
    # x_a = 1/6 + x_b/3, x_b = 1/2 + x_a/2 -> x_a = 2/5, x_b = 7/10; P = 4/6*2/5 + 2/6*7/10 = 1/2
    # without a: 2/6 * 1/2 = 1/6 -> RE 2/3 ; without b: 4/6 * 1/6 = 1/9 -> RE 7/9
    out = markov_attribution(t)
    assert out["removal_effect"].tolist() == pytest.approx([2 / 3, 7 / 9], abs=1e-12)
    assert out["conversions"].tolist() == pytest.approx([18 / 13, 21 / 13], abs=1e-12)


def _dense_markov(rows: list[tuple[list[str], float, float, float]]) -> dict[str, np.ndarray]:
    """Order-1 removal effects from the fundamental matrix N = (I - Q)^-1, built with loops."""
    channels = sorted({c for path, *_ in rows for c in path})
    idx = {c: i + 1 for i, c in enumerate(channels)}  # 0 = start
    n = len(channels) + 1
    counts = np.zeros((n, n + 2))  # columns n, n + 1: conversion, null
    value_flow = np.zeros(n)
    for path, conv, nulls, value in rows:
        w = conv + nulls
        states = [0] + [idx[c] for c in path]
        for s, t in itertools.pairwise(states):
            counts[s, t] += w
        counts[states[-1], n] += conv
        counts[states[-1], n + 1] += nulls
        value_flow[states[-1]] += value
    out_w = counts.sum(axis=1)
    p = counts / out_w[:, None]
    q, r = p[:, :n], p[:, n]
    rv = value_flow / out_w

    def absorb(q: np.ndarray) -> tuple[float, float]:
        fundamental = np.linalg.inv(np.eye(n) - q)
        return (fundamental @ r)[0], (fundamental @ rv)[0]

    base, base_v = absorb(q)
    re, re_v = [], []
    for c in channels:
        qc = q.copy()
        qc[:, idx[c]] = 0.0  # transitions into c go to null
        pc, vc = absorb(qc)
        re.append(1 - pc / base)
        re_v.append(1 - vc / base_v)
    return {"channels": np.array(channels), "re": np.array(re), "re_value": np.array(re_v)}


def test_markov_order1_matches_a_dense_fundamental_matrix_on_8_channels() -> None:
    rng = np.random.default_rng(8)
    names = [f"ch{i}" for i in range(8)]
    rows = []
    for _ in range(300):
        path = list(rng.choice(names, rng.integers(1, 7)))
        path = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]  # no repeats
        conv, nulls = int(rng.integers(0, 5)), int(rng.integers(0, 20))
        if conv + nulls:
            rows.append((path, conv, nulls, conv * float(rng.uniform(10, 100))))
    table = pd.DataFrame(
        {
            "path": [" > ".join(p) for p, *_ in rows],
            "conversions": [r[1] for r in rows],
            "nulls": [r[2] for r in rows],
            "value": [r[3] for r in rows],
        }
    )
    ref = _dense_markov(rows)
    out = markov_attribution(table)
    assert out["channel"].tolist() == ref["channels"].tolist()
    np.testing.assert_allclose(out["removal_effect"], ref["re"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out["value_removal_effect"], ref["re_value"], rtol=1e-10)
    total = table["conversions"].sum()
    np.testing.assert_allclose(out["conversions"], total * ref["re"] / ref["re"].sum(), rtol=1e-10)
    np.testing.assert_allclose(
        out["value"], table["value"].sum() * ref["re_value"] / ref["re_value"].sum(), rtol=1e-10
    )
    # order 1 absorption reproduces the observed conversion rate (flows are conserved)
    rate = total / (table["conversions"].sum() + table["nulls"].sum())
    assert out.attrs["conversion_probability"] == pytest.approx(rate, rel=1e-12)


def test_markov_collapses_repeats() -> None:
    repeated = _paths([("a > a > b", 2, 1), ("b > b", 1, 1), ("a", 0, 2)])
    collapsed = _paths([("a > b", 2, 1), ("b", 1, 1), ("a", 0, 2)])
    for order in (1, 2):
        pd.testing.assert_frame_equal(
            markov_attribution(repeated, order=order),
            markov_attribution(collapsed, order=order),
            check_flags=False,
        )
    loops = transition_matrix(repeated, collapse_repeats=False)
    assert loops.loc["a", "a"] > 0 and transition_matrix(repeated).loc["a", "a"] == 0
    # order 1: a self-loop only delays absorption, the probabilities do not change
    np.testing.assert_allclose(
        markov_attribution(repeated, collapse_repeats=False)["conversions"],
        markov_attribution(collapsed)["conversions"],
        rtol=1e-12,
    )


def test_dense_order1_route_equals_the_sparse_removal_solves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Order 1 counts transitions with one bincount and reads every removal effect off one
    fundamental matrix; the general route restricts the chain per channel and solves it with
    SuperLU. Same chain, same answer to rounding, with and without collapsing repeats, with
    dead-end channels, paths that never convert and zero-count rows."""
    from crm_models.models.attribution import markov as markov_module

    rng = np.random.default_rng(11)
    tables = [_random_table(seed) for seed in (12, 13)]
    repeats = _random_table(14).assign(path=lambda t: t["path"].str.replace("tv", "tv > tv"))
    dead = _paths([("a > b", 2, 0, 9.0), ("z", 0, 4, 0.0), ("b > z", 0, 1, 0.0), ("a", 0, 0, 0.0)])
    for table in [*tables, repeats, dead]:
        table = table.assign(value=table["value"] * rng.uniform(0.5, 1.5, len(table)))
        for collapse in (True, False):
            dense = markov_attribution(table, collapse_repeats=collapse)
            with monkeypatch.context() as m:
                m.setattr(markov_module, "DENSE_MAX_CHANNELS", 0)
                sparse = markov_attribution(table, collapse_repeats=collapse)
            pd.testing.assert_frame_equal(
                dense, sparse, check_exact=False, rtol=1e-12, atol=1e-12, check_flags=False
            )
            for key in ("conversion_probability", "value_per_journey"):
                assert dense.attrs[key] == pytest.approx(sparse.attrs[key], rel=1e-12)
    dead_end = markov_attribution(dead).set_index("channel")
    assert dead_end.loc["z", "removal_effect"] == 0.0


@pytest.mark.parametrize("block_bytes", [1, 100, 1 << 19])  # 1 or ~3 paths a block, or all
def test_order1_counted_while_splitting_equals_the_chain_of_the_codes(
    monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    """Order 1 on a path table counts its transitions while the strings are split (no codes are
    kept); the answer equals the chain built from encode_paths' codes, with tiny blocks, long and
    non-ASCII names, a channel first seen late, two raw tokens that trim to one channel (a self
    transition, removed by collapsing), and several separators."""
    from crm_models.features import paths as paths_module

    monkeypatch.setattr(paths_module, "_BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(21)
    names = ["a", " a", "sms", "exactly8", "affiliate", "Paid Search - Brand", "x" * 30, "é-mail"]
    for sep in (" > ", ">", " -> "):
        n = 60
        paths = [sep.join(rng.choice(names, rng.integers(1, 7))) for _ in range(n)]
        paths[50] = sep.join(["a", "late_channel_name"])
        table = pd.DataFrame(
            {
                "path": paths,
                "conversions": rng.integers(0, 3, n),
                "nulls": rng.integers(0, 3, n),
                "value": rng.gamma(2.0, 10.0, n),
            }
        )
        assert paths_module._order1_counts(table, sep) is not None  # the counting route
        for collapse in (True, False):
            counted = markov_attribution(table, sep=sep, collapse_repeats=collapse)
            encoded = markov_attribution(encode_paths(table, sep), collapse_repeats=collapse)
            pd.testing.assert_frame_equal(
                counted, encoded, check_exact=False, rtol=1e-12, atol=1e-12, check_flags=False
            )
            assert counted.attrs == pytest.approx(encoded.attrs, rel=1e-12)
    # more distinct tokens than the counting route keeps: encode_paths takes the table
    wide = _paths([(" > ".join(f"c{i}" for i in range(i, i + 3)), 1, 1) for i in range(70)])
    assert paths_module._order1_counts(wide, " > ") is None
    assert markov_attribution(wide)["conversions"].sum() == pytest.approx(70)


# --------------------------------------------------------------------------- Shapley


SHAPLEY_TABLE = _paths([("a > b > a", 3, 0, 60.0), ("b", 1, 2, 5.0), ("c > a", 2, 1, 20.0)])


def test_simplified_shapley_by_hand() -> None:
    # R({a,b}) = 3 -> 3/2 each; R({b}) = 1 -> b 1; R({a,c}) = 2 -> 1 each.
    # a = 1.5 + 1 = 2.5, b = 1.5 + 1 = 2.5, c = 1; value: a 30 + 10, b 30 + 5, c 10.
    out = shapley_attribution(SHAPLEY_TABLE)
    assert _conv(out) == pytest.approx({"a": 2.5, "b": 2.5, "c": 1.0}, abs=1e-12)
    assert out["value"].tolist() == pytest.approx([40.0, 35.0, 10.0], abs=1e-12)
    assert out["share"].sum() == pytest.approx(1.0)
    # linear attribution differs: a gets 2 of path 1's 3 touches
    assert _conv(heuristic_attribution(SHAPLEY_TABLE, "linear"))["a"] == pytest.approx(3.0)


def test_ordered_shapley_by_hand() -> None:
    # a > b > a: a's 3/2 split over positions 1 and 3 (3/4 each), b 3/2 at position 2;
    # b: 1 at position 1; c > a: c 1 at position 1, a 1 at position 2.
    out = shapley_attribution(SHAPLEY_TABLE, ordered=True).set_index("channel")
    assert out.loc["a", ["position_1", "position_2", "position_3"]].tolist() == pytest.approx(
        [0.75, 1.0, 0.75]
    )
    assert out.loc["b", ["position_1", "position_2", "position_3"]].tolist() == pytest.approx(
        [1.0, 1.5, 0.0]
    )
    assert out.loc["c", ["position_1", "position_2", "position_3"]].tolist() == pytest.approx(
        [1.0, 0.0, 0.0]
    )
    # the positions refine the simplified value
    simple = shapley_attribution(SHAPLEY_TABLE).set_index("channel")
    np.testing.assert_allclose(out["conversions"], simple["conversions"], rtol=1e-12)
    positions = out.filter(like="position_").sum(axis=1)
    np.testing.assert_allclose(positions, out["conversions"], rtol=1e-12)


def test_simplified_shapley_equals_the_full_shapley_sum() -> None:
    """phi_j = sum_S |S|!(p-|S|-1)!/p! [v(S+j) - v(S)] with v(S) = sum_{T subset S} R(T)."""
    rng = np.random.default_rng(5)
    names = list("abcde")
    paths = [" > ".join(rng.choice(names, rng.integers(1, 5))) for _ in range(60)]
    table = pd.DataFrame(
        {"path": paths, "conversions": rng.integers(0, 4, 60), "nulls": rng.integers(0, 4, 60)}
    )
    r = {
        frozenset(row.channels.split(" > ")): row.conversions
        for row in coalition_table(table).itertuples()
    }

    def v(s: frozenset) -> float:
        return sum(val for t, val in r.items() if t <= s)

    p = len(names)
    expected = []
    for j in names:
        others = [c for c in names if c != j]
        phi = 0.0
        for k in range(p):
            for s in itertools.combinations(others, k):
                s = frozenset(s)
                weight = math.factorial(k) * math.factorial(p - k - 1) / math.factorial(p)
                phi += weight * (v(s | {j}) - v(s))
        expected.append(phi)
    out = shapley_attribution(table)
    assert out["channel"].tolist() == names
    np.testing.assert_allclose(out["conversions"], expected, rtol=1e-12)


# --------------------------------------------------------------------------- theory checks


NEVER_CONVERTS = _paths([("a > b", 2, 0), ("z > a", 0, 2), ("z", 0, 1), ("b", 1, 1)])


def test_a_channel_that_never_converts() -> None:
    # z is on no converting path: no credit from the touch rules or Shapley (R counts conversions)
    for method in HEURISTIC_METHODS:
        assert _conv(heuristic_attribution(NEVER_CONVERTS, method))["z"] == 0.0
    assert _conv(shapley_attribution(NEVER_CONVERTS))["z"] == 0.0
    # Markov (order 1) is memoryless: z leads to a, and a leads to conversions.
    # b -> conv 3/4; a -> b 1/2 -> x_a = 3/8; z -> a 2/3 -> x_z = 1/4.
    # P = (2*3/8 + 3*1/4 + 2*3/4) / 7 = 3/7. without z: 2.25/7 -> RE 1/4; without a:
    # 1.5/7 -> RE 1/2; without b: 0 -> RE 1. Shares 1/7, 2/7, 4/7 of 3 conversions.
    out = markov_attribution(NEVER_CONVERTS)
    assert _conv(out) == pytest.approx({"a": 6 / 7, "b": 12 / 7, "z": 3 / 7}, abs=1e-12)
    # ... but a channel that only ever leads to (null) has removal effect exactly 0
    dead_end = _paths([("a > b", 2, 0), ("z", 0, 4), ("b", 1, 1)])
    out = markov_attribution(dead_end).set_index("channel")
    assert out.loc["z", "removal_effect"] == 0.0 and out.loc["z", "conversions"] == 0.0


def _all_methods(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    out = {m: heuristic_attribution(table, m) for m in HEURISTIC_METHODS}
    out.update(
        markov1=markov_attribution(table),
        markov2=markov_attribution(table, order=2),
        markov3=markov_attribution(table, order=3),
        shapley=shapley_attribution(table),
        shapley_ordered=shapley_attribution(table, ordered=True),
    )
    return out


def _random_table(seed: int, n: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = ["email", "search", "social", "display", "tv"]
    paths = [" > ".join(rng.choice(names, rng.integers(1, 6))) for _ in range(n)]
    conv = rng.integers(0, 6, n)
    return pd.DataFrame(
        {
            "path": paths,
            "conversions": conv,
            "nulls": rng.integers(0, 15, n),
            "value": conv * rng.uniform(5, 50, n),
        }
    )


def test_every_method_attributes_exactly_the_totals() -> None:
    table = _random_table(1)
    for name, out in _all_methods(table).items():
        assert out["conversions"].sum() == pytest.approx(table["conversions"].sum(), rel=1e-12), (
            name
        )
        assert out["value"].sum() == pytest.approx(table["value"].sum(), rel=1e-12), name
        assert out["share"].sum() == pytest.approx(1.0, rel=1e-12), name
        assert (out["conversions"] >= -1e-12).all(), name
        assert out["channel"].tolist() == sorted(out["channel"]), name


def test_row_order_and_split_rows_do_not_change_results() -> None:
    table = _random_table(2)
    shuffled = table.sample(frac=1.0, random_state=3).reset_index(drop=True)
    # one path split over two rows: counts add up
    row = int(np.flatnonzero(table["nulls"].to_numpy() >= 1)[0])
    one = table.iloc[[row]]
    split = pd.concat(
        [
            table.drop(index=row),
            one.assign(conversions=0, nulls=1, value=0.0),
            one.assign(nulls=one["nulls"] - 1),
        ],
        ignore_index=True,
    )
    ref = _all_methods(table)
    for other in (shuffled, split):
        for name, out in _all_methods(other).items():
            pd.testing.assert_frame_equal(
                out, ref[name], check_exact=False, rtol=1e-10, atol=1e-12, check_flags=False
            )


def test_results_are_deterministic() -> None:
    table = _random_table(4)
    a, b = markov_attribution(table, order=2), markov_attribution(table, order=2)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_data() -> None:
    table = _random_table(6, n=60)
    widths = {}
    for scale in (1, 16):
        big = table.assign(
            conversions=table["conversions"] * scale,
            nulls=table["nulls"] * scale,
            value=table["value"] * scale,
        )
        for method, kw in (("markov", {}), ("shapley", {}), ("last", {}), ("markov", {"order": 2})):
            out = bootstrap_attribution(big, method, n_boot=60, seed=1, **kw)
            point = (
                markov_attribution(big, **kw)
                if method == "markov"
                else shapley_attribution(big)
                if method == "shapley"
                else heuristic_attribution(big, method)
            )
            np.testing.assert_allclose(out["share"], point["share"], rtol=1e-12)
            assert (out["share_lower"] <= out["share"] + 1e-12).all(), (method, scale)
            assert (out["share"] <= out["share_upper"] + 1e-12).all(), (method, scale)
            assert (out["share_se"] > 0).all()
            widths[(method, str(kw), scale)] = (out["share_upper"] - out["share_lower"]).mean()
    for (method, kw, scale), w in widths.items():
        if scale == 16:
            # 16x the journeys: the interval shrinks by about sqrt(16) = 4
            assert w < 0.4 * widths[(method, kw, 1)], (method, kw)


def test_bootstrap_on_journeys_matches_the_path_table_in_distribution() -> None:
    table = _random_table(7, n=40)
    rows = []
    for r in table.itertuples():
        ch = r.path.split(" > ")
        per = r.value / r.conversions if r.conversions else 0.0
        rows += [(ch, True, per)] * r.conversions + [(ch, False, 0.0)] * r.nulls
    journeys = pd.DataFrame(rows, columns=["channels", "converted", "value"])
    a = bootstrap_attribution(journeys, "shapley", n_boot=150, seed=2)
    b = bootstrap_attribution(table, "shapley", n_boot=150, seed=2)
    np.testing.assert_allclose(a["share"], b["share"], rtol=1e-12)
    np.testing.assert_allclose(a["share_se"], b["share_se"], rtol=0.35)
    # same seed, same answer
    pd.testing.assert_frame_equal(a, bootstrap_attribution(journeys, "shapley", n_boot=150, seed=2))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("table", "sep", "match"),
    [
        (pd.DataFrame({"path": [], "conversions": []}), " > ", "empty"),
        (_paths([("a->b", 1, 0), ("c", 0, 1)]), " > ", r"'a->b'.*'->'"),
        (_paths([("a,b", 1, 0), ("c", 0, 1)]), " > ", r"sep=' > '.*'a,b'.*','"),
        (_paths([("a > b", 1, 0), ("b", 1, 0)]), ",", r"contains ' > '; pass sep=' > '"),
        (_paths([("a > b", -1, 0)]), " > ", r"'conversions'.*negative"),
        (_paths([("a > b", 1, -2)]), " > ", r"'nulls'.*negative"),
        (_paths([("a > b", float("nan"), 0)]), " > ", r"'conversions'.*NaN"),
        (_paths([("a > (start)", 1, 0)]), " > ", r"'\(start\)'.*Markov state"),
        (_paths([("a > ( Conversion )", 1, 0)]), " > ", r"Markov state"),
        (_paths([("(NULL) > b", 1, 0)]), " > ", r"Markov state"),
        (_paths([("a >  > b", 1, 0)]), " > ", r"empty channel"),
        (pd.DataFrame({"path": ["a"], "nulls": [1]}), " > ", r"missing column.*conversions"),
        (_paths([("a > b", 0, 3)]), " > ", r"no conversions"),
    ],
)
def test_bad_path_tables_raise_data_errors(table: pd.DataFrame, sep: str, match: str) -> None:
    for fn in (
        lambda: heuristic_attribution(table, "linear", sep=sep),
        lambda: markov_attribution(table, sep=sep),
        lambda: shapley_attribution(table, sep=sep),
    ):
        with pytest.raises(DataError, match=match):
            fn()


def test_bad_parameters_raise_config_errors() -> None:
    for order in (0, 4, 1.5, True):
        with pytest.raises(ConfigError, match="order must be 1, 2 or 3"):
            markov_attribution(CLASSIC, order=order)
    with pytest.raises(ConfigError, match="order"):
        transition_matrix(CLASSIC, order=5)
    with pytest.raises(ConfigError, match="unknown heuristic method 'middle'"):
        heuristic_attribution(CLASSIC, "middle")
    with pytest.raises(ConfigError, match="unknown attribution method 'magic'"):
        bootstrap_attribution(CLASSIC, "magic")
    with pytest.raises(ConfigError, match="half_life"):
        heuristic_attribution(CLASSIC, "time_decay", half_life=0)
    with pytest.raises(ConfigError, match="position_weights"):
        heuristic_attribution(CLASSIC, "position", position_weights=(0.5, 0.5))
    with pytest.raises(ConfigError, match="n_boot"):
        bootstrap_attribution(CLASSIC, "last", n_boot=1)
    with pytest.raises(ConfigError, match="ci"):
        bootstrap_attribution(CLASSIC, "last", ci=1.5)
    with pytest.raises(DataError, match="whole counts"):
        bootstrap_attribution(_paths([("a", 0.5, 1)]), "last")


def test_shapley_refuses_more_than_64_channels() -> None:
    table = _paths([(" > ".join(f"c{i}" for i in range(65)), 1, 0)])
    with pytest.raises(ConfigError, match="up to 64 channels"):
        shapley_attribution(table)
    wide = _paths([(" > ".join(f"c{i}" for i in range(64)), 1, 0)])
    assert shapley_attribution(wide)["conversions"].tolist() == pytest.approx([1 / 64] * 64)
