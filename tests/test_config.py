"""The experiment config: strict schema, key paths in errors, --set overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_models.config import apply_overrides, load_config, parse_config
from crm_models.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_every_shipped_config_validates():
    configs = sorted((REPO / "configs").glob("*.yaml"))
    assert configs, "no configs shipped"
    for path in configs:
        cfg = load_config(path)
        assert cfg.name


def test_unknown_key_is_rejected_with_its_path():
    with pytest.raises(ConfigError) as err:
        parse_config({"name": "x", "model": {"name": "cox_ph", "parms": {}}})
    assert "model.parms" in str(err.value)
    assert "unknown key" in str(err.value)


def test_wrong_type_is_rejected_with_its_path():
    with pytest.raises(ConfigError) as err:
        parse_config({"name": "x", "features": {"horizon_days": "soon"}})
    assert "features.horizon_days" in str(err.value)


def test_unknown_table_is_rejected():
    with pytest.raises(ConfigError) as err:
        parse_config({"name": "x", "data": {"tables": {"orders": {"path": "o.csv"}}}})
    assert "data.tables" in str(err.value) and "orders" in str(err.value)


def test_overrides_parse_yaml_values_and_nest():
    raw = {"name": "x", "model": {"params": {"penalizer": 0.01}}}
    out = apply_overrides(
        raw, ["model.params.penalizer=0.5", "features.horizon_days=90", "evaluation.horizons_days=[30, 60]"]
    )
    cfg = parse_config(out)
    assert cfg.model.params["penalizer"] == 0.5
    assert cfg.features.horizon_days == 90
    assert cfg.evaluation.horizons_days == [30, 60]
    assert raw["model"]["params"]["penalizer"] == 0.01  # the input is not mutated


def test_override_without_equals_sign_is_a_config_error():
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["model.name"])


def test_override_of_unknown_key_is_rejected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: c\n")
    with pytest.raises(ConfigError, match="model.colour"):
        load_config(path, ["model.colour=red"])


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_resolved_yaml_round_trips():
    cfg = parse_config({"name": "x", "model": {"params": {"penalizer": 0.2}}})
    import yaml

    again = parse_config(yaml.safe_load(cfg.resolved_yaml()))
    assert again == cfg
    flat = cfg.flat_params()
    assert flat["model.params.penalizer"] == 0.2
    assert flat["features.horizon_days"] == 180
