"""What makes the next transform a full refresh: the project digest in the build fingerprint.

A schema file's configs and contract types change a model's rows or columns, so editing them
must rebuild the incremental models; its descriptions and tests do not, so editing them must
not throw away a large warehouse's incremental state.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from sluice.warehouse.fingerprint import project_digest
from sluice.warehouse.transform import DBT_PROJECT_DIR


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    copy = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    return copy


def _edit(path: Path, change) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc["models"][0])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _interactions(project: Path) -> Path:
    return project / "models" / "marts" / "interactions.yml"


def test_a_models_config_in_its_schema_file_changes_the_digest(project):
    before = project_digest(project)
    _edit(_interactions(project), lambda m: m["config"].update({"on_schema_change": "fail"}))
    assert project_digest(project) != before


def test_a_contract_column_type_changes_the_digest(project):
    before = project_digest(project)

    def retype(model):
        column = next(c for c in model["columns"] if c.get("data_type"))
        column["data_type"] = "varchar" if column["data_type"] != "varchar" else "text"
    _edit(_interactions(project), retype)
    assert project_digest(project) != before


def test_descriptions_and_tests_leave_the_digest_alone(project):
    path = _interactions(project)
    _edit(path, lambda m: None)  # the same settings written back by yaml
    before = project_digest(project)

    def redocument(model):
        model["description"] = "edited by a data engineer"
        model["columns"][0]["description"] = "also edited"
        model.setdefault("data_tests", []).append("dbt_utils_free_placeholder")
    _edit(path, redocument)
    assert project_digest(project) == before


def test_a_new_schema_file_with_a_config_changes_the_digest(project):
    before = project_digest(project)
    (project / "models" / "marts" / "extra.yml").write_text(
        "version: 2\nmodels:\n  - name: interactions_extra\n    config:\n"
        "      materialized: table\n")
    assert project_digest(project) != before


def test_a_schema_file_dbt_cannot_read_still_counts(project):
    before = project_digest(project)
    path = project / "models" / "marts" / "broken.yml"
    path.write_text("models: [unclosed\n")
    broken = project_digest(project)
    assert broken != before
    path.write_text("models: [unclosed, still\n")
    assert project_digest(project) != broken


def test_the_shipped_project_digest_is_stable(project):
    assert project_digest(project) == project_digest(DBT_PROJECT_DIR) == project_digest(project)
