"""Journeys and path tables: hand-made touchpoints (lookback, repeat conversions, path cap, nulls,
point-in-time cutoff), the simulator's ground truth, and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crm_models.data.synthetic import simulate
from crm_models.errors import DataError
from crm_models.features import aggregate_paths, build_journeys
from crm_models.features.engine import to_ibis
from crm_models.features.paths import (
    JOURNEY_COLUMNS,
    build_journeys_expr,
    conversions_from_touchpoints,
    conversions_from_transactions,
    encode_paths,
)
from crm_models.models.attribution import markov_attribution


def _ts(*values: str) -> np.ndarray:
    return pd.to_datetime(list(values), format="ISO8601").to_numpy()


@pytest.fixture
def touchpoints() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 1, 1, 1, 2, 2, 3, 3, 3, 4],
            "ts": _ts(
                "2024-01-01",  # 1: 31 days before its conversion: outside a 30-day lookback
                "2024-01-20",
                "2024-02-01",  # 1: exactly at the conversion instant: belongs to it
                "2024-02-05",
                "2024-02-08",
                "2024-03-01",  # 1: after the last conversion: the non-converting tail
                "2024-01-01",
                "2024-01-03",  # 2: after its only conversion
                "2024-01-01",
                "2024-03-01",  # 3: 60 days before its last touch: cut from the tail
                "2024-03-31",
                "2024-01-10",  # 4: converts with no touch in its window later on
            ),
            "channel": ["a", "b", "c", "a", "b", "b", "x", "y", "s", "e", "d", "z"],
        }
    )


@pytest.fixture
def conversions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 4],
            "ts": _ts("2024-02-01", "2024-02-10", "2024-01-02", "2024-06-01"),
            "value": [10.0, 20.0, 5.0, 7.0],
        }
    )


def _rows(j: pd.DataFrame) -> list[tuple]:
    return [
        (r.customer_id, r.journey_id, list(r.channels), bool(r.converted), float(r.value))
        for r in j.itertuples()
    ]


def test_journeys_by_hand(touchpoints: pd.DataFrame, conversions: pd.DataFrame) -> None:
    j = build_journeys(touchpoints, conversions, lookback_days=30)
    assert list(j.columns) == list(JOURNEY_COLUMNS)
    assert _rows(j) == [
        (1, 1, ["b", "c"], True, 10.0),  # a (01-01) is 31 days back: dropped
        (1, 2, ["a", "b"], True, 20.0),  # (02-01, 02-10]
        (1, 3, ["b"], False, 0.0),  # after the last conversion
        (2, 1, ["x"], True, 5.0),
        (2, 2, ["y"], False, 0.0),
        (3, 1, ["e", "d"], False, 0.0),  # s is 90 days before the last touch
        # 4: z precedes its conversion (06-01) by 143 days: in no journey, and the conversion,
        # without a touch in its window, has none either
    ]
    assert j["n_touches"].tolist() == [2, 2, 1, 1, 1, 2]
    assert j.loc[0, "conversion_ts"] == pd.Timestamp("2024-02-01")
    assert pd.isna(j.loc[2, "conversion_ts"])
    assert [list(pd.to_datetime(t)) for t in j.loc[:1, "timestamps"]] == [
        [pd.Timestamp("2024-01-20"), pd.Timestamp("2024-02-01")],
        [pd.Timestamp("2024-02-05"), pd.Timestamp("2024-02-08")],
    ]


def test_lookback_none_and_path_cap_keeps_the_last_touches(
    touchpoints: pd.DataFrame, conversions: pd.DataFrame
) -> None:
    j = build_journeys(touchpoints, conversions, lookback_days=None)
    assert _rows(j)[0] == (1, 1, ["a", "b", "c"], True, 10.0)
    assert _rows(j)[5] == (3, 1, ["s", "e", "d"], False, 0.0)
    capped = build_journeys(touchpoints, conversions, lookback_days=None, max_path_length=2)
    assert [list(c) for c in capped["channels"]] == [
        ["b", "c"],
        ["a", "b"],
        ["b"],
        ["x"],
        ["y"],
        ["e", "d"],
        ["z"],  # z: no lookback now
    ]
    assert capped["n_touches"].max() == 2


def test_nonconverting_journeys_are_kept_unless_asked(
    touchpoints: pd.DataFrame, conversions: pd.DataFrame
) -> None:
    j = build_journeys(touchpoints, conversions, include_nonconverting=False)
    assert j["converted"].all() and len(j) == 3


def test_touches_at_the_same_instant_follow_channel_order() -> None:
    tp = pd.DataFrame(
        {
            "customer_id": [1, 1, 1],
            "ts": _ts("2024-01-01", "2024-01-01", "2024-01-02"),
            "channel": ["b", "a", "c"],
        }
    )
    cv = pd.DataFrame({"customer_id": [1], "ts": _ts("2024-01-01"), "value": [1.0]})
    j = build_journeys(tp, cv)
    assert _rows(j) == [(1, 1, ["a", "b"], True, 1.0), (1, 2, ["c"], False, 0.0)]


def test_cutoff_is_point_in_time(touchpoints: pd.DataFrame, conversions: pd.DataFrame) -> None:
    cutoff = pd.Timestamp("2024-02-09")
    before = build_journeys(touchpoints, conversions, cutoff=cutoff)
    # customer 1's second conversion (02-10) is after the cutoff: a > b is not converted yet
    assert _rows(before)[:2] == [(1, 1, ["b", "c"], True, 10.0), (1, 2, ["a", "b"], False, 0.0)]
    later_tp = pd.DataFrame(
        {
            "customer_id": [1, 3, 5],
            "ts": _ts("2024-02-09", "2024-05-01", "2024-02-09T00:00:01"),
            "channel": ["q", "q", "q"],
        }
    )
    later_cv = pd.DataFrame(
        {"customer_id": [1, 3], "ts": _ts("2024-02-09", "2024-03-02"), "value": [1.0, 2.0]}
    )
    after = build_journeys(
        pd.concat([touchpoints, later_tp], ignore_index=True),
        pd.concat([conversions, later_cv], ignore_index=True),
        cutoff=cutoff,
    )
    pd.testing.assert_frame_equal(before, after)


def test_cutoff_on_random_tables_ignores_appended_future_rows() -> None:
    rng = np.random.default_rng(3)
    start = pd.Timestamp("2024-01-01")
    cutoff = start + pd.Timedelta(days=60)

    def draw(n: int, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
        return rng.integers(1, 40, n), (
            start + pd.to_timedelta(rng.uniform(lo, hi, n), "D")
        ).to_numpy()

    cid, ts = draw(400, 0, 60)
    tp = pd.DataFrame({"customer_id": cid, "ts": ts, "channel": rng.choice(list("abcd"), 400)})
    ccid, cts = draw(30, 0, 60)
    cv = pd.DataFrame({"customer_id": ccid, "ts": cts, "value": rng.uniform(1, 9, 30)})
    fcid, fts = draw(200, 60, 120)
    tp_f = pd.DataFrame({"customer_id": fcid, "ts": fts, "channel": rng.choice(list("abe"), 200)})
    gcid, gts = draw(40, 60, 120)
    cv_f = pd.DataFrame({"customer_id": gcid, "ts": gts, "value": 1.0})
    kw = {"lookback_days": 20, "max_path_length": 4, "cutoff": cutoff}
    before = build_journeys(tp, cv, **kw)
    after = build_journeys(pd.concat([tp, tp_f]), pd.concat([cv, cv_f]), **kw)
    pd.testing.assert_frame_equal(before, after)
    assert before["converted"].any() and (~before["converted"]).any()


def test_ibis_expression_and_ibis_inputs_agree(
    touchpoints: pd.DataFrame, conversions: pd.DataFrame
) -> None:
    ref = build_journeys(touchpoints, conversions, lookback_days=30, max_path_length=3)
    from_ibis = build_journeys(to_ibis(touchpoints), to_ibis(conversions), 30, 3)
    pd.testing.assert_frame_equal(ref, from_ibis)
    expr = build_journeys_expr(to_ibis(touchpoints), to_ibis(conversions), 30, 3)
    out = expr.order_by(["customer_id", "journey_id"]).to_pyarrow().to_pandas()
    assert [list(c) for c in out["channels"]] == [list(c) for c in ref["channels"]]
    assert out["value"].tolist() == ref["value"].tolist()
    assert out["n_touches"].tolist() == ref["n_touches"].tolist()


def test_aggregate_paths_by_hand(touchpoints: pd.DataFrame, conversions: pd.DataFrame) -> None:
    j = build_journeys(touchpoints, conversions, lookback_days=30)
    j = pd.concat([j, j.iloc[[0, 2]]], ignore_index=True)  # b > c converts twice, b null twice
    paths = aggregate_paths(j)
    assert paths.to_dict("list") == {
        "path": ["b > c", "a > b", "x", "b", "e > d", "y"],
        "conversions": [2.0, 1.0, 1.0, 0.0, 0.0, 0.0],
        "value": [20.0, 20.0, 5.0, 0.0, 0.0, 0.0],
        "nulls": [0.0, 0.0, 0.0, 2.0, 1.0, 1.0],
    }
    assert aggregate_paths(j, sep="->")["path"].iloc[0] == "b->c"


def test_conversions_from_touchpoints_and_transactions() -> None:
    tp = pd.DataFrame(
        {
            "customer_id": [1, 1, 2],
            "ts": _ts("2024-01-01", "2024-01-02", "2024-01-05"),
            "channel": ["a", "b", "c"],
            "converted": [False, True, True],
            "order_id": pd.array([None, 10, 11], dtype="Int64"),
        }
    )
    tx = pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 1],
            "order_id": [10, 10, 11, 12],
            "ts": _ts("2024-01-02T03:00", "2024-01-02T03:00", "2024-01-06", "2024-02-01"),
            "amount": [5.0, 2.5, 9.0, 4.0],
        }
    )
    cv = conversions_from_touchpoints(tp, tx)
    assert cv.to_dict("list") == {
        "customer_id": [1, 2],
        "ts": [pd.Timestamp("2024-01-02T03:00"), pd.Timestamp("2024-01-06")],
        "value": [7.5, 9.0],  # order lines summed
    }
    assert conversions_from_touchpoints(tp)["value"].tolist() == [0.0, 0.0]
    first = conversions_from_transactions(tx)
    assert first["value"].tolist() == [7.5, 9.0]
    assert len(conversions_from_transactions(tx, first_only=False)) == 3
    with pytest.raises(DataError, match=r"order_id.*not in transactions.*example row"):
        conversions_from_touchpoints(tp, tx[tx["order_id"] != 11])


def test_simulator_one_converting_journey_per_converted_touch() -> None:
    ds = simulate(1500, seed=11)
    tp, tx, customers = (ds.tables[k] for k in ("touchpoints", "transactions", "customers"))
    cv = conversions_from_touchpoints(tp, tx)
    j = build_journeys(tp, cv, lookback_days=30)
    converted = j[j["converted"]]
    assert len(converted) == tp.loc[tp["converted"], "customer_id"].nunique() == 1500
    # every prospect has exactly one journey
    assert len(j) == tp["customer_id"].nunique() == ds.ground_truth["n_prospects"]
    # the simulator spreads a journey over 30 days before the last touch and converts hours
    # later, so a 30-day lookback from the conversion drops a few first touches; none without
    everything = build_journeys(tp, cv, lookback_days=None)
    assert everything["n_touches"].sum() == len(tp) > j["n_touches"].sum()
    pd.testing.assert_frame_equal(
        everything.drop(columns=["channels", "timestamps", "n_touches"]),
        j.drop(columns=["channels", "timestamps", "n_touches"]),
    )
    # ground truth: acquisition_channel is the converting (last) touch's channel, the value is
    # the first order's amount
    last = converted.set_index("customer_id")["channels"].map(lambda c: c[-1])
    acq = customers.set_index("customer_id")["acquisition_channel"]
    assert (last.sort_index() == acq.loc[last.index].sort_index()).all()
    first_orders = conversions_from_transactions(tx)
    assert converted["value"].sum() == pytest.approx(first_orders["value"].sum(), rel=1e-12)
    paths = aggregate_paths(j)
    assert paths["conversions"].sum() == 1500
    assert paths["conversions"].sum() + paths["nulls"].sum() == len(j)


# --------------------------------------------------------------------------- errors


def test_missing_column_names_table_column_and_example(
    touchpoints: pd.DataFrame, conversions: pd.DataFrame
) -> None:
    with pytest.raises(
        DataError, match=r"'touchpoints'.*\['channel'\].*example row: \{'customer_id': 1"
    ):
        build_journeys(touchpoints.drop(columns="channel"), conversions)
    cv = pd.DataFrame({"customer_id": [1], "when": ["2024-01-01"]})
    with pytest.raises(DataError, match=r"'conversions'.*\['ts'\]"):
        build_journeys(touchpoints, cv)


def test_null_channel_is_reported_with_its_row(
    touchpoints: pd.DataFrame, conversions: pd.DataFrame
) -> None:
    bad = touchpoints.copy()
    bad.loc[4, "channel"] = None
    with pytest.raises(DataError, match=r"'touchpoints', column 'channel': 1 null.*example row 4"):
        build_journeys(bad, conversions)


def test_unparseable_ts_is_reported_with_its_row(
    touchpoints: pd.DataFrame, conversions: pd.DataFrame
) -> None:
    bad = touchpoints.astype({"ts": str})
    bad.loc[3, "ts"] = "next tuesday"
    with pytest.raises(DataError, match=r"'touchpoints', column 'ts'.*'next tuesday'.*row 3"):
        build_journeys(bad, conversions)
    ok = touchpoints.astype({"ts": str})  # ISO strings parse
    pd.testing.assert_frame_equal(
        build_journeys(ok, conversions), build_journeys(touchpoints, conversions)
    )


def test_bad_arguments(touchpoints: pd.DataFrame, conversions: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="lookback_days"):
        build_journeys(touchpoints, conversions, lookback_days=0)
    with pytest.raises(DataError, match="max_path_length"):
        build_journeys(touchpoints, conversions, max_path_length=0)


def test_channel_containing_the_separator_is_refused() -> None:
    j = pd.DataFrame({"channels": [["a > b"], ["c"]], "converted": [True, False]})
    with pytest.raises(DataError, match=r"'a > b' contains the path separator"):
        aggregate_paths(j)
    j = pd.DataFrame({"channels": [["a->b"], ["c"]], "converted": [True, False]})
    with pytest.raises(DataError, match=r"'a->b' contains '->'.*rename"):
        aggregate_paths(j)


def test_no_touches_give_an_empty_journeys_table(conversions: pd.DataFrame) -> None:
    empty = pd.DataFrame(
        {
            "customer_id": np.array([], np.int64),
            "ts": np.array([], "datetime64[ns]"),
            "channel": np.array([], object),
        }
    )
    j = build_journeys(empty, conversions)
    assert list(j.columns) == list(JOURNEY_COLUMNS) and len(j) == 0
    with pytest.raises(DataError, match="empty"):
        aggregate_paths(j)


def test_encode_paths_round_trip() -> None:
    paths = pd.DataFrame(
        {"path": ["b > a", " a >  b ", "c"], "conversions": [1, 2, 0], "nulls": [0, 1, 3]}
    )
    enc = encode_paths(paths)
    assert enc.channels == ("a", "b", "c")
    assert enc.codes.tolist() == [1, 0, 0, 1, 2]  # tokens stripped of spaces
    assert enc.offsets.tolist() == [0, 2, 4, 5]
    again = enc.path_table()
    assert again.to_dict("list") == {
        "path": ["a > b", "b > a", "c"],
        "conversions": [2.0, 1.0, 0.0],
        "value": [0.0, 0.0, 0.0],
        "nulls": [1.0, 0.0, 3.0],
    }


def test_encoded_journeys_merge_into_distinct_paths() -> None:
    j = pd.DataFrame(
        {
            "channels": [["a", "b"], ["c"], ["a", "b"], ["c"], ["b", "a"]],
            "converted": [True, False, False, True, True],
            "value": [10.0, 0.0, 0.0, 4.0, 1.0],
        }
    )
    merged, inv = encode_paths(j).distinct()
    assert inv.tolist() == [0, 1, 0, 1, 2]
    assert merged.path_strings().tolist() == ["a > b", "c", "b > a"]
    assert merged.conversions.tolist() == [1.0, 1.0, 1.0]
    assert merged.nulls.tolist() == [1.0, 1.0, 0.0]
    assert merged.value.tolist() == [10.0, 4.0, 1.0]


# --------------------------------------------------------------------------- the fast path splitter


def _arrow_reference(paths: pd.DataFrame, sep: str) -> tuple[tuple[str, ...], list, list]:
    """The specification of path splitting: pyarrow's split_pattern + utf8_trim_whitespace,
    channels coded in sorted name order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lists = pc.split_pattern(pa.array(paths["path"].tolist(), pa.string()), sep)
    tokens = pc.utf8_trim_whitespace(lists.flatten()).to_pylist()
    names = sorted(set(tokens))
    codes = [names.index(t) for t in tokens]
    return tuple(names), codes, lists.offsets.to_pylist()


def _random_paths(rng: np.random.Generator, names: list[str], sep: str, n: int) -> pd.DataFrame:
    paths = [sep.join(rng.choice(names, rng.integers(1, 7))) for _ in range(n)]
    return pd.DataFrame({"path": paths, "conversions": rng.integers(0, 3, n), "nulls": 1})


@pytest.mark.parametrize("block_bytes", [1, 100, 1 << 19])  # 1 or ~5 paths a block, or all
def test_fast_splitter_equals_pyarrow_split(
    monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    """Short (<= 8 bytes), long (9-16, > 16, > 24 bytes) and non-ASCII names, spaces to trim,
    names that share their first 8 bytes, a channel first seen in a late block, several seps."""
    from crm_models.features import paths as paths_module

    monkeypatch.setattr(paths_module, "_BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(0)
    names = [
        "a", "sms", "exactly8", "affiliate", "affiliates", "twelve bytes", "Paid Search - Brand",
        "Paid Search - Generic", "x" * 33, "é-mail", "日本", " padded ", "tab\tin",
    ]  # fmt: skip
    for sep in (" > ", ">", " -> ", "|", ", "):
        table = _random_paths(rng, names, sep, 60)
        table.loc[57, "path"] = sep.join(["a", "late_channel_name", "zz"])  # first seen late
        # not fallen back to the pyarrow path:
        assert paths_module._split_fast(table["path"].to_numpy(), sep) is not None
        enc = encode_paths(table, sep)
        ref_names, ref_codes, ref_offsets = _arrow_reference(table, sep)
        assert enc.channels == ref_names, sep
        assert enc.codes.tolist() == ref_codes, sep
        assert enc.offsets.tolist() == ref_offsets, sep
        assert enc.codes.dtype == np.int32 and enc.offsets.dtype == np.int64


_PATH_DTYPES = ["object", "string[pyarrow]", "large_string"]


def _as_dtype(paths: list[str] | pd.Series, dtype: str) -> pd.Series:
    import pyarrow as pa

    s = pd.Series(list(paths), dtype=object)
    if dtype == "large_string":
        return s.astype(pd.ArrowDtype(pa.large_string()))
    return s.astype(dtype)


@pytest.mark.parametrize("dtype", _PATH_DTYPES)
@pytest.mark.parametrize("block_bytes", [1, 100, 1 << 19])
def test_fast_splitter_reads_arrow_columns(
    monkeypatch: pytest.MonkeyPatch, dtype: str, block_bytes: int
) -> None:
    """Object, string[pyarrow] and large_string columns, whole, sliced (an Arrow array with an
    offset) and chunked (two arrays concatenated), give pyarrow's split."""
    from crm_models.features import paths as paths_module

    monkeypatch.setattr(paths_module, "_BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(7)
    names = ["a", "sms", "tv", "affiliate", "twelve bytes", "x" * 20, "é-mail", " padded "]
    table = _random_paths(rng, names, " > ", 80)
    column = _as_dtype(table["path"], dtype)
    tables = {
        "whole": table.assign(path=column),
        "sliced": table.iloc[5:].assign(path=column.iloc[5:]),
        "chunked": table.assign(
            path=pd.concat([column.iloc[:30], column.iloc[30:]], ignore_index=True)
        ),
    }
    for label, t in tables.items():
        assert paths_module._split_fast(t["path"], " > ") is not None, label
        enc = encode_paths(t)
        ref_names, ref_codes, ref_offsets = _arrow_reference(t, " > ")
        assert enc.channels == ref_names, label
        assert enc.codes.tolist() == ref_codes, label
        assert enc.offsets.tolist() == ref_offsets, label


@pytest.mark.parametrize("dtype", _PATH_DTYPES)
@pytest.mark.parametrize(
    ("paths", "sep"),
    [
        (["a > b", "b\x1f> c"], " > "),  # a control character before sep's tail
        (["a → b", "c → a"], "→"),  # a separator whose first character is not ASCII
        (["a", "b", "c > d"], " > "),  # paths of one token next to each other
        (["b > a", "a"], ">"),  # one-byte tokens and separator: two marks in a byte pair
        (["a >", " b > c"], " > "),  # back to back, the paths hold a separator across the seam
    ],
)
def test_fast_splitter_takes_path_seams(paths: list[str], sep: str, dtype: str) -> None:
    """Arrow holds the paths back to back: short tokens put two marks close together, and a
    separator across two paths is none (the fast splitter leaves that to pyarrow, as it does
    Python strings holding its joiner byte)."""
    from crm_models.features.paths import _split_fast

    table = pd.DataFrame({"path": _as_dtype(paths, dtype), "conversions": 1})
    slow = paths[0] == "a >" if dtype != "object" else any("\x1f" in p for p in paths)
    assert (_split_fast(table["path"], sep) is None) == slow
    enc = encode_paths(table, sep)
    names, codes, offsets = _arrow_reference(table, sep)
    assert (enc.channels, enc.codes.tolist(), enc.offsets.tolist()) == (names, codes, offsets)


@pytest.mark.parametrize("dtype", _PATH_DTYPES)
@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["a > ", "b"], "empty channel name"),  # a path ending in the separator
        (["a", " > b"], "empty channel name"),  # one starting with it
        (["a", "", "b"], "empty channel name"),  # an empty path
    ],
)
def test_empty_tokens_and_paths_are_errors_in_every_dtype(
    paths: list[str], message: str, dtype: str
) -> None:
    table = pd.DataFrame({"path": _as_dtype(paths, dtype), "conversions": 1})
    with pytest.raises(DataError, match=message):
        encode_paths(table)
    with pytest.raises(DataError, match=message):
        markov_attribution(table)


@pytest.mark.parametrize(
    ("paths", "sep"),
    [
        (["a\x00b > c", "c"], " > "),  # NUL bytes
        (["a >> >> b", "c >> a"], " >> "),  # overlapping separators
        ([" > ".join(["x" * 300, "y"])], " > "),  # a token over 256 bytes
    ],
)
def test_inputs_outside_the_fast_splitter_give_the_same_codes(paths: list[str], sep: str) -> None:
    from crm_models.features.paths import _split_fast

    assert _split_fast(np.array(paths, dtype=object), sep) is None  # the pyarrow path takes them
    table = pd.DataFrame({"path": paths, "conversions": 1})
    enc = encode_paths(table, sep)
    names, codes, offsets = _arrow_reference(table, sep)
    assert (enc.channels, enc.codes.tolist(), enc.offsets.tolist()) == (names, codes, offsets)


@pytest.mark.parametrize("sep", [">", ", ", " > ", " -> ", " --> ", " ----> ", " =====> "])
def test_fast_splitter_separators_of_every_width(sep: str) -> None:
    """Separators of 1-8 bytes, so delimiters are found in 2-, 4- and 8-byte groups; one-letter
    channels, and names holding the separator's tail or runs of spaces (two hits in one group:
    the byte-wise pass; a hit not preceded by the separator's first byte: no delimiter)."""
    from crm_models.features.paths import _split_fast

    rng = np.random.default_rng(len(sep))
    names = ["a", "b", "sms", "affiliate", "Paid  Search - Brand", f"x{sep[1:]}y", "q  r"]
    table = _random_paths(rng, names, sep, 200)
    assert _split_fast(table["path"].to_numpy(), sep) is not None  # the fast path
    enc = encode_paths(table, sep)
    ref_names, ref_codes, ref_offsets = _arrow_reference(table, sep)
    assert enc.channels == ref_names
    assert enc.codes.tolist() == ref_codes
    assert enc.offsets.tolist() == ref_offsets


def test_path_table_sorts_non_ascii_paths_like_python_strings() -> None:
    """aggregate_paths sorts (conversions, nulls desc, then path) in Arrow, by UTF-8 bytes: the
    same order as Python's string comparison, checked on mixed-script names against pandas."""
    rng = np.random.default_rng(3)
    names = ["a", "Z", "é-mail", "日本", "\U0001f600", "ä", "a b", "z"]
    n = 400
    journeys = pd.DataFrame(
        {
            "channels": [list(rng.choice(names, rng.integers(1, 4))) for _ in range(n)],
            "converted": rng.random(n) < 0.2,  # many ties on (conversions, nulls)
            "value": rng.gamma(2.0, 5.0, n),
        }
    )
    table = aggregate_paths(journeys)
    paths = [" > ".join(c) for c in journeys["channels"]]
    conv = journeys["converted"].to_numpy(float)
    ref = (
        pd.DataFrame(
            {
                "path": paths,
                "conversions": conv,
                "value": journeys["value"] * conv,
                "nulls": 1 - conv,
            }
        )
        .groupby("path", as_index=False, sort=False)
        .sum()
        .sort_values(["conversions", "nulls", "path"], ascending=[False, False, True])
        .reset_index(drop=True)
    )
    assert table["path"].tolist() == ref["path"].tolist()
    np.testing.assert_allclose(
        table[["conversions", "value", "nulls"]], ref[["conversions", "value", "nulls"]]
    )


def test_many_distinct_channels_and_non_string_cells() -> None:
    many = pd.DataFrame({"path": [f"c{i} > c{i + 1}" for i in range(3000)], "conversions": 1})
    enc = encode_paths(many)
    names, codes, offsets = _arrow_reference(many, " > ")
    assert (enc.channels, enc.codes.tolist(), enc.offsets.tolist()) == (names, codes, offsets)
    numbers = pd.DataFrame({"path": [1, 2, 1], "conversions": 1})
    assert encode_paths(numbers).channels == ("1", "2")
    with pytest.raises(DataError, match="'path'.*1 null"):
        encode_paths(pd.DataFrame({"path": ["a > b", None], "conversions": [1, 1]}))


def test_fast_splitter_equals_pyarrow_on_random_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """200 random tables: separators of 1-4 bytes (one not ASCII), names built from fragments
    with spaces, tabs and separator-like characters, the separator's tail inside names, empty
    paths, blocks from 1 byte to 512 kB; object and Arrow columns. Where the fast splitter takes
    a table, its tokens, offsets and order-1 counts equal pyarrow's split and a direct count."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from crm_models.features import paths as paths_module

    rng = np.random.default_rng(123)
    seps = [" > ", ">", " -> ", "|", ", ", "→", " => ", "::"]
    fragments = ["a", "b", "sms", "tv", "affiliate", "x" * 12, "y" * 20, "é", " ", "  ", ">",
                 "-", "=", "→", ":", "\t", "Paid Search - Brand", "q r", "z" * 9]  # fmt: skip
    fast = 0
    for _ in range(200):
        sep = str(rng.choice(seps))
        names = ["".join(rng.choice(fragments, rng.integers(1, 4))) for _ in range(7)]
        names = names[: rng.integers(1, 8)] + ([sep[1:] + "k"] if rng.random() < 0.3 else [])
        n = int(rng.integers(1, 60))
        paths = [sep.join(rng.choice(names, rng.integers(1, 6))) for _ in range(n)]
        if rng.random() < 0.1:
            paths[rng.integers(n)] = ""
        monkeypatch.setattr(paths_module, "_BLOCK_BYTES", int(rng.choice([1, 7, 50, 300, 1 << 19])))
        lists = pc.split_pattern(pa.array(paths, pa.string()), sep)
        tokens = pc.utf8_trim_whitespace(lists.flatten()).to_pylist()
        offsets = np.asarray(lists.offsets)
        names_sorted = sorted(set(tokens))
        codes = np.array([names_sorted.index(t) for t in tokens], np.int64)
        weight = rng.integers(0, 5, n).astype(float)
        k = len(names_sorted)
        pairs = np.zeros((k + 1, k))
        before = np.empty(codes.size, np.int64)
        before[1:] = codes[:-1]
        before[offsets[:-1][np.diff(offsets) > 0]] = k
        np.add.at(pairs, (before, codes), np.repeat(weight, np.diff(offsets)))
        for dtype in ("object", "string[pyarrow]"):
            column = pd.Series(paths, dtype=dtype)
            split = paths_module._split_fast(column, sep)
            if split is None:
                continue
            fast += 1
            assert [split.names[c] for c in split.codes] == tokens, (paths, sep)
            assert split.offsets.tolist() == offsets.tolist()
            counted = paths_module._split_fast(column, sep, weight)
            assert counted is not None
            np.testing.assert_allclose(counted.pairs, pairs, rtol=1e-12)
            assert counted.last.tolist() == codes[offsets[1:] - 1].tolist()
    assert fast > 200  # most tables take the fast path (the rest: empty paths or tokens)


@pytest.mark.parametrize("dtype", _PATH_DTYPES)
def test_fast_splitter_grows_its_scratch(monkeypatch: pytest.MonkeyPatch, dtype: str) -> None:
    """Blocks with more tokens (one-byte names) or, for Python strings, more bytes (lengths the
    sample missed) than the scratch was sized for: it grows, and the split is still pyarrow's."""
    from crm_models.features import paths as paths_module

    one_byte = [">".join(["a", "b"] * 50)] * 20  # 100 one-byte tokens a path
    table = pd.DataFrame({"path": _as_dtype(one_byte, dtype), "conversions": 1})
    assert paths_module._split_fast(table["path"], ">") is not None
    enc = encode_paths(table, ">")
    names, codes, offsets = _arrow_reference(table, ">")
    assert (enc.channels, enc.codes.tolist(), enc.offsets.tolist()) == (names, codes, offsets)

    monkeypatch.setattr(paths_module, "_BLOCK_BYTES", 100)
    uneven = [("a" if i % 2 == 0 else " > ".join(["b", "c"] * (5 + i))) for i in range(128)]
    table = pd.DataFrame({"path": _as_dtype(uneven, dtype), "conversions": 1})
    assert paths_module._split_fast(table["path"], " > ") is not None
    enc = encode_paths(table)
    names, codes, offsets = _arrow_reference(table, " > ")
    assert (enc.channels, enc.codes.tolist(), enc.offsets.tolist()) == (names, codes, offsets)
