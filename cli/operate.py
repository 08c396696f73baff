"""`sluice rebuild | backup DEST | restore SRC | upgrade | doctor`: operating a home (README
"Operating Sluice"); each a thin call into sluice.operate or sluice.warehouse.rebuild."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sluice.settings import get_settings


def cmd_rebuild(args: argparse.Namespace) -> None:
    from sluice.warehouse.engine import duckdb_path
    from sluice.warehouse.rebuild import rebuild

    settings = get_settings()
    rebuild(duckdb_path(settings, "sluice rebuild"), settings.raw_location,
            settings.landing_location, settings.home / "dbt", settings.dbt_vars(), say=print)


def cmd_backup(args: argparse.Namespace) -> None:
    from sluice.operate.backup import backup
    from sluice.warehouse.engine import duckdb_path

    settings = get_settings()
    duckdb_path(settings, "sluice backup")
    backup(settings, args.dest, say=print)


def cmd_restore(args: argparse.Namespace) -> None:
    from sluice.operate.restore import restore

    restore(get_settings(), args.src, say=print)


def cmd_upgrade(args: argparse.Namespace) -> None:
    from sluice.operate.upgrade import upgrade
    from sluice.warehouse.engine import duckdb_path

    settings = get_settings()
    duckdb_path(settings, "sluice upgrade")
    upgrade(settings, say=print)


def cmd_doctor(args: argparse.Namespace) -> None:
    from sluice.operate.doctor import diagnose, render

    findings = diagnose(get_settings())
    print(render(findings))
    if not all(f.ok for f in findings):
        raise SystemExit(1)


def add_commands(sub: Any) -> dict[str, Any]:
    """Operating a home: README "Operating Sluice"."""
    sub.add_parser("rebuild", help="rebuild the warehouse from the raw log and landing folder")
    sub.add_parser("backup", help="a consistent copy of the home and the MLflow store"
                   ).add_argument("dest", type=Path, help="a new or empty folder")
    sub.add_parser("restore", help="a backup into a fresh SLUICE_HOME").add_argument(
        "src", type=Path, help="a folder `sluice backup` wrote")
    sub.add_parser("upgrade", help="migrate the home's data formats to this version")
    sub.add_parser("doctor", help="check the environment and the home; exit 1 on problems")
    return {"rebuild": cmd_rebuild, "backup": cmd_backup, "restore": cmd_restore,
            "upgrade": cmd_upgrade, "doctor": cmd_doctor}


