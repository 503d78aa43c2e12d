"""The CDNOW transaction log (Fader, Hardie & Lee 2005), shipped as package data.

This module owns reading the two CDNOW files in ``crm_models/data/cdnow/`` (see their README)
into the ``transactions`` contract: customer_id, ts, amount, quantity.
"""

from __future__ import annotations

from importlib.resources import as_file, files

import pandas as pd

from crm_models.errors import DataError

_MASTER = "CDNOW_master.txt"
_SAMPLE = "CDNOW_sample.txt"
_SAMPLE_COLUMNS = ["customer_id", "sample_id", "date", "number_of_cds", "dollar_value"]


def load_cdnow(sample: bool = False) -> pd.DataFrame:
    """Load the CDNOW transactions (master: 23,570 customers; sample: its 2,357-customer 1/10).

    Returns one row per file line with columns ``customer_id`` (int64, the master id in both
    files), ``ts`` (datetime64[ns], the purchase date), ``amount`` (float64, dollar_value) and
    ``quantity`` (int64, number_of_cds). Several rows may share a customer and a day.
    """
    resource = files("crm_models.data").joinpath("cdnow", _SAMPLE if sample else _MASTER)
    # The master file has a header line, the sample none; both are whitespace-separated.
    read_kwargs = (
        {"header": None, "names": _SAMPLE_COLUMNS, "usecols": [0, 2, 3, 4]}
        if sample
        else {"header": 0, "names": ["customer_id", "date", "number_of_cds", "dollar_value"]}
    )
    try:
        with as_file(resource) as path:
            raw = pd.read_csv(
                path,
                sep=r"\s+",
                dtype={
                    "customer_id": "int64",
                    "date": "str",
                    "number_of_cds": "int64",
                    "dollar_value": "float64",
                },
                **read_kwargs,
            )
    except FileNotFoundError as exc:  # pragma: no cover - broken installation
        raise DataError(f"CDNOW data file missing from the package: {exc.filename}") from None
    return pd.DataFrame(
        {
            "customer_id": raw["customer_id"].astype("int64"),
            "ts": pd.to_datetime(raw["date"], format="%Y%m%d").astype("datetime64[ns]"),
            "amount": raw["dollar_value"].astype("float64"),
            "quantity": raw["number_of_cds"].astype("int64"),
        }
    )
