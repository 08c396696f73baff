"""Settings: environment for paths and ports, config/sluice.yaml for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sluice import settings as settings_module
from sluice.settings import (
    DEFAULT_CONFIG,
    AppConfig,
    ConfigError,
    Settings,
    get_settings,
    load_app_config,
)

ENV_VARS = ("SLUICE_HOME", "SLUICE_PORT", "SLUICE_HOST", "SLUICE_CONFIG",
            "SLUICE_MLFLOW_ARTIFACTS", "MLFLOW_TRACKING_URI")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def _write_config(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_defaults(clean_env, tmp_path):
    s = Settings()
    assert s.home.is_absolute()
    assert s.home == (tmp_path / "data").resolve()
    assert s.port == 8000
    assert s.host == "127.0.0.1"
    assert s.config == settings_module.DEFAULT_CONFIG
    assert s.config.is_file()
    assert s.raw_dir == s.home / "raw"
    assert s.landing_dir == s.home / "landing"
    assert s.warehouse_path == s.home / "warehouse.duckdb"
    assert s.mlflow_tracking_uri.startswith("sqlite:///")
    assert s.mlflow_tracking_uri.endswith("mlflow.db")


def test_environment_overrides(clean_env, tmp_path):
    home = tmp_path / "somewhere" / ".." / "home"
    config = _write_config(tmp_path / "alt.yaml", {"model": {"name": "alt"}})
    clean_env.setenv("SLUICE_HOME", str(home))
    clean_env.setenv("SLUICE_PORT", "9123")
    clean_env.setenv("SLUICE_CONFIG", str(config))
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    s = Settings()
    assert s.home == (tmp_path / "home").resolve()
    assert s.port == 9123
    assert s.config == config.resolve()
    assert s.mlflow_tracking_uri == "http://mlflow.internal:5000"
    assert s.app.model.name == "alt"
    assert s.registered_model_name("shop") == "alt-shop"
    assert s.warehouse_path == (tmp_path / "home" / "warehouse.duckdb").resolve()


def test_relative_and_user_home_are_made_absolute(clean_env, tmp_path):
    clean_env.setenv("SLUICE_HOME", "rel/dir")
    assert Settings().home == (tmp_path / "rel" / "dir").resolve()
    clean_env.setenv("HOME", str(tmp_path / "user"))
    clean_env.setenv("SLUICE_HOME", "~/sluice")
    assert Settings().home == (tmp_path / "user" / "sluice").resolve()


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_bad_port_rejected(clean_env, port):
    clean_env.setenv("SLUICE_PORT", port)
    with pytest.raises(ValueError):
        Settings()


def test_overrides_by_argument(clean_env, tmp_path):
    s = get_settings(home=tmp_path / "h", port=8123)
    assert (s.home, s.port) == ((tmp_path / "h").resolve(), 8123)


def test_shipped_config_validates():
    shipped = yaml.safe_load(settings_module.DEFAULT_CONFIG.read_text())
    app = load_app_config(settings_module.DEFAULT_CONFIG)
    assert isinstance(app, AppConfig)
    assert app.events.weights == shipped["events"]["weights"]
    assert app.events.item_fields == shipped["events"]["item_fields"]
    assert app.sufficiency.min_interactions == shipped["sufficiency"]["min_interactions"]
    assert app.model.factors == shipped["model"]["factors"]
    assert app.evaluation.k == shipped["evaluation"]["k"]
    assert app.serving.max_num_results == shipped["serving"]["max_num_results"]
    assert [t.tracking_id for t in app.trackers] == [
        t["tracking_id"] for t in shipped["trackers"]]


def test_dbt_vars_hold_events_and_sufficiency(clean_env, tmp_path):
    config = _write_config(tmp_path / "c.yaml", {
        "events": {"weights": {"view": 0.5, "buy": 3}, "event_value_threshold": 2.0},
        "sufficiency": {"min_interactions": 7, "min_users_with_two_interactions": 3},
    })
    clean_env.setenv("SLUICE_CONFIG", str(config))
    dbt = Settings().dbt_vars()
    assert set(dbt) == {"events", "sufficiency"}
    assert dbt["events"]["weights"] == {"view": 0.5, "buy": 3.0}
    assert dbt["events"]["event_value_threshold"] == 2.0
    assert dbt["events"]["anonymous_user_prefix"] == "session:"
    assert dbt["sufficiency"] == {"min_interactions": 7, "min_users_with_two_interactions": 3}


def test_shipped_dbt_vars(clean_env):
    dbt = Settings().dbt_vars()
    shipped = yaml.safe_load(settings_module.DEFAULT_CONFIG.read_text())
    assert dbt["events"]["weights"] == shipped["events"]["weights"]
    assert dbt["sufficiency"] == shipped["sufficiency"]


def test_empty_config_gives_defaults(tmp_path):
    app = load_app_config(_write_config(tmp_path / "empty.yaml", ""))
    assert app == AppConfig()
    assert app.events.weights == {"click": 1.0, "purchase": 4.0}


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_app_config(missing)
    assert str(missing) in str(info.value)
    assert "not found" in str(info.value)
    assert "SLUICE_CONFIG" in str(info.value)


def test_missing_config_through_settings(clean_env, tmp_path):
    clean_env.setenv("SLUICE_CONFIG", str(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError, match="not found"):
        _ = Settings().app


def test_invalid_yaml(tmp_path):
    path = _write_config(tmp_path / "bad.yaml", "events: [unclosed\n  weights: {\n")
    with pytest.raises(ConfigError) as info:
        load_app_config(path)
    assert "not valid YAML" in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value) and "line 2" in str(info.value)


@pytest.mark.parametrize("data, named", [
    ({"suficiency": {"min_interactions": 5}},
     "suficiency: unknown key (did you mean sufficiency?)"),
    ({"sufficiency": {"min_interaction": 5}},
     "sufficiency.min_interaction: unknown key (did you mean min_interactions?)"),
    ({"serving": {"ann": {"recall_targt": 0.9}}}, "serving.ann.recall_targt: unknown key"),
    ({"templates": {"t": {"base": "popular", "filter": []}}}, "templates.t.filter: unknown key"),
    ({"trackers": [{"tenant": "shop", "tracking_id": "t-1", "tracking": "x"}]},
     "trackers.0.tracking: unknown key"),
    ({"templates": {"t": {"base": "popular", "filters": [{"field": "x", "opp": "ne"}]}}},
     "templates.t.filters[0].opp: not a member of a condition"),
])
def test_a_key_no_setting_reads_is_refused_by_name(tmp_path, data, named):
    with pytest.raises(ConfigError) as info:
        load_app_config(_write_config(tmp_path / "typo.yaml", data))
    assert named in str(info.value)


def test_the_shipped_config_and_the_format_fixtures_hold_no_unknown_key():
    from sluice.settings.keys import unknown_keys

    for path in [DEFAULT_CONFIG, *Path(__file__).parent.glob("fixtures/formats/**/*.yaml")]:
        assert unknown_keys(AppConfig, yaml.safe_load(path.read_text())) == [], path


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_app_config(_write_config(tmp_path / "list.yaml", "- a\n- b\n"))


@pytest.mark.parametrize("weight", [-1.0, 0])
def test_non_positive_weight(tmp_path, weight):
    path = _write_config(tmp_path / "w.yaml", {"events": {"weights": {"click": 1, "skip": weight}}})
    with pytest.raises(ConfigError) as info:
        load_app_config(path)
    message = str(info.value)
    assert "invalid" in message
    assert "weights must be positive" in message
    assert "skip" in message


def test_empty_weights(tmp_path):
    with pytest.raises(ConfigError, match="at least one interaction type"):
        load_app_config(_write_config(tmp_path / "w.yaml", {"events": {"weights": {}}}))


def test_two_trackers_for_one_tenant(tmp_path):
    path = _write_config(tmp_path / "t.yaml", {"trackers": [
        {"tracking_id": "a", "tenant": "shop"},
        {"tracking_id": "b", "tenant": "shop"},
        {"tracking_id": "c", "tenant": "other"},
    ]})
    with pytest.raises(ConfigError) as info:
        load_app_config(path)
    assert "one tracker per tenant" in str(info.value)
    assert "['shop']" in str(info.value)  # only the tenant with several trackers is named


def test_trackers_for_distinct_tenants_are_fine(tmp_path):
    app = load_app_config(_write_config(tmp_path / "t.yaml", {"trackers": [
        {"tracking_id": "a", "tenant": "shop"}, {"tracking_id": "b"}]}))
    assert [(t.tracking_id, t.tenant) for t in app.trackers] == [("a", "shop"), ("b", "default")]


@pytest.mark.parametrize("section, values", [
    ("model", {"factors": 1}),
    ("evaluation", {"holdout_fraction": 0.95}),
    ("serving", {"max_num_results": 501}),
    ("sufficiency", {"min_interactions": -1}),
])
def test_out_of_range_values(tmp_path, section, values):
    path = _write_config(tmp_path / "r.yaml", {section: values})
    with pytest.raises(ConfigError, match=next(iter(values))):
        load_app_config(path)


def test_artifact_root_beside_sqlite_store(clean_env, tmp_path):
    store = tmp_path / "ml" / "mlflow.db"
    clean_env.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    assert Settings().artifact_root == (tmp_path / "ml" / "artifacts").resolve()


def test_artifact_root_relative_sqlite(clean_env, tmp_path):
    clean_env.setenv("MLFLOW_TRACKING_URI", "sqlite:///rel/mlflow.db")
    assert Settings().artifact_root == (tmp_path / "rel" / "artifacts").resolve()


def test_artifact_root_default_store(clean_env):
    s = Settings()
    store = Path(s.mlflow_tracking_uri.removeprefix("sqlite:///"))
    assert s.artifact_root == store.parent.resolve() / "artifacts"


def test_artifact_root_for_a_server_and_explicit(clean_env, tmp_path):
    clean_env.setenv("SLUICE_HOME", str(tmp_path / "home"))
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert Settings().artifact_root == (tmp_path / "home" / "mlflow-artifacts").resolve()
    clean_env.setenv("SLUICE_MLFLOW_ARTIFACTS", str(tmp_path / "arts"))
    assert Settings().artifact_root == (tmp_path / "arts").resolve()


def test_artifact_root_as_a_url_stays_a_url(clean_env, tmp_path):
    clean_env.setenv("SLUICE_MLFLOW_ARTIFACTS", "s3://bucket/mlflow/")
    assert Settings().artifact_root == "s3://bucket/mlflow"  # MLflow writes there itself
    clean_env.setenv("SLUICE_MLFLOW_ARTIFACTS", "~/arts")
    assert Settings().artifact_root == (Path.home() / "arts").resolve()


def test_the_shipped_config_trains_on_interactions_files_without_event_type():
    """A Personalize interactions file may leave EVENT_TYPE out; its rows get one type, which
    the shipped weights must name, or such a file would load and never be trained on."""
    from sluice.intake.tabular import UNTYPED_EVENT_TYPE

    weights = load_app_config(settings_module.DEFAULT_CONFIG).events.weights
    assert weights[UNTYPED_EVENT_TYPE] == 1.0


def test_the_reload_wait_is_a_serving_setting_of_120_seconds_by_default(tmp_path):
    assert AppConfig().serving.reload_wait_seconds == 120
    app = load_app_config(_write_config(tmp_path / "short.yaml",
                                        {"serving": {"reload_wait_seconds": 2.5}}))
    assert app.serving.reload_wait_seconds == 2.5


@pytest.mark.parametrize("value, reason", [
    (0, "Input should be greater than 0"),
    (-1, "Input should be greater than 0"),
    (86400, "Input should be less than or equal to 3600"),
    ("soon", "Input should be a valid number"),
    (".nan", "Input should be a finite number"),
])
def test_a_reload_wait_out_of_range_is_refused_naming_the_key(tmp_path, value, reason):
    path = tmp_path / "wait.yaml"
    path.write_text(f"serving:\n  reload_wait_seconds: {value}\n")
    with pytest.raises(ConfigError) as info:
        load_app_config(path)
    assert f"serving.reload_wait_seconds: {reason}" in str(info.value)
