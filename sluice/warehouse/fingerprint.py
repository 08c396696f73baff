"""What of the dbt project a build's rows depend on (`transform.build_fingerprint` digests
it with the vars and the warehouse): its SQL whole, and of its schema files what changes rows
or columns, not descriptions or tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml


def project_digest(project: Path) -> str:
    """The project's SQL and `dbt_project.yml` whole, and of its models' schema files what
    changes rows or columns (configs, contracts' types and constraints), not descriptions or
    tests: editing a description must not rebuild the warehouse, a config must."""
    digest = hashlib.sha256()
    files = [project / "dbt_project.yml", *sorted(project.glob("models/**/*.sql")),
             *sorted(project.glob("macros/**/*.sql")), *sorted(project.glob("models/**/*.yml"))]
    for path in files:
        body = _schema_settings(path) if path.parent != project and path.suffix == ".yml" \
            else path.read_bytes()
        digest.update(str(path.relative_to(project)).encode() + body)
    return digest.hexdigest()


def _schema_settings(path: Path) -> bytes:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError:  # dbt refuses it; any edit counts
        return path.read_bytes()
    nodes = [n for kind in ("models", "snapshots") for n in (doc or {}).get(kind) or []
             if isinstance(n, dict)] if isinstance(doc, dict) else []
    kept = [{**{k: n.get(k) for k in ("name", "config", "versions", "constraints")},
             "columns": [{k: c.get(k) for k in ("name", "data_type", "constraints", "config")}
                         for c in n.get("columns") or [] if isinstance(c, dict)]} for n in nodes]
    return json.dumps(kept, sort_keys=True, default=str).encode()
