"""The layout rules of docs/architecture.md, checked over every import (lazy ones included).

Data flows one way: intake -> warehouse -> learn -> serve. Each stage package of `sluice/`
may import the shared top-level modules and the stages before it, with one exception that
the design makes on purpose: serve never imports warehouse (serving never opens the
warehouse; everything it needs comes in the model bundle and the raw log). Nothing in
`sluice/` imports Prefect, FastAPI or the apps built on them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

STAGES = ("intake", "warehouse", "learn", "serve", "analytics", "operate")
# packages that are shared top-level modules grown into folders (part "sluice", not a stage)
SHARED_PACKAGES = ("settings",)
# what each part of the code may import from the project (besides itself)
ALLOWED: dict[str, set[str]] = {
    "sluice": set(),  # shared top-level modules: settings, logs, auth, bundle, scoring, ...
    "sluice.intake": {"sluice"},
    "sluice.warehouse": {"sluice", "sluice.intake"},
    "sluice.learn": {"sluice", "sluice.warehouse"},
    "sluice.serve": {"sluice", "sluice.intake", "sluice.learn"},
    "sluice.analytics": {"sluice", "sluice.warehouse", "sluice.learn"},
    # operating a home (backup, upgrade, doctor) spans the data of every stage; nothing
    # in the data flow imports it back
    "sluice.operate": {"sluice", "sluice.intake", "sluice.warehouse", "sluice.learn"},
    # flows/batch.py runs the serving tiers offline (sluice.serve.batch)
    "flows": {"sluice", "sluice.intake", "sluice.warehouse", "sluice.learn", "sluice.serve",
              "sluice.analytics"},
    "serving": {"sluice", "sluice.intake", "sluice.learn", "sluice.serve"},
    "cli": {"sluice", "sluice.intake", "sluice.warehouse", "sluice.learn", "sluice.analytics",
            "sluice.operate", "flows"},
}
FRAMEWORKS = ("prefect", "prefect_dask", "fastapi", "starlette", "uvicorn")


def _part(module: str) -> str | None:
    """The layout part a project module belongs to (`sluice.serve.recommender` -> sluice.serve)."""
    top, _, rest = module.partition(".")
    if top == "sluice":
        stage = rest.split(".")[0]
        return f"sluice.{stage}" if stage in STAGES else "sluice"
    return top if top in ("flows", "serving", "cli") else None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from sluice import registry` imports the module sluice.registry
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


SOURCES = sorted(p for folder in ALLOWED if "." not in folder
                 for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_data_flow(path: Path) -> None:
    own = _part(_module_name(path))
    assert own is not None
    wrong = []
    for line, name in _imports(path):
        target = _part(name)
        if own.startswith("sluice") and name.split(".")[0] in FRAMEWORKS:
            wrong.append(f"{path.name}:{line} imports {name} (sluice is framework-free)")
        if target is None or target == own:
            continue
        if target not in ALLOWED[own]:
            wrong.append(f"{path.name}:{line} imports {name} ({own} may not import {target})")
    assert not wrong, "\n".join(wrong)


def test_every_stage_is_a_package_and_the_rules_cover_it() -> None:
    stages = {p.name for p in (ROOT / "sluice").iterdir()
              if p.is_dir() and (p / "__init__.py").exists()}
    assert stages == set(STAGES) | set(SHARED_PACKAGES)


def test_the_checker_sees_a_back_edge(tmp_path: Path) -> None:
    """The rule is live: a learn module importing serve is reported."""
    assert "sluice.serve" not in ALLOWED[_part("sluice.learn.training")]
    assert _part("sluice.serve.recommender") == "sluice.serve"
    assert _part("sluice.settings") == "sluice"
    assert _part("sluice.settings.serving") == "sluice"
    assert _part("prefect") is None
