"""Make docs/report.png: Sluice's HTML analytics report as headless Chromium draws it, with
data in every section.

    make docs        # or: .venv/bin/python docs/make_report_png.py [--out PATH] [--keep DIR]

Everything happens in a temporary home (nothing of $SLUICE_HOME is read or written), with the
domain library alone (no Prefect, no server), as tests/e2e/test_experiments_population.py
runs an experiment:

1. a small synthetic history (`sluice.intake.synthetic`) is ingested, transformed (dbt) and
   trained on twice: popularity (v1, the challenger) and ALS (v2, the champion);
2. one experiment runs between them (champion against challenger, by user) on a template with
   exploration on (`explore`: personalized, share 0.2), so answers log their propensities;
3. every user of the history asks a few times (`Service.recommend`, in process) and clicks by
   the generator's own rule (`synthetic.population`), and the log is ingested and transformed;
4. ALS is trained once more (v3): its run logs off-policy estimates on the champion's (v2's)
   explored answers;
5. the report is written as `sluice report` writes it (`write_report`, the tenant's
   experiments) and Debian's `chromium` (/usr/bin/chromium) takes a screenshot of it, cut
   below the page's last row that is not blank and saved as a palette PNG.

It takes a couple of minutes (two dbt builds, three trainings) and needs chromium; no test
runs it (tests/test_make_report_png.py only parses its arguments). The simulated answers are
timestamped when they are made, so the figures move a little from run to run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TENANT, TEMPLATE, EXPERIMENT = "default", "explore", "als-vs-popularity"
WIDTH, TALLEST = 1100, 16000  # the window Chromium draws in; the picture is cut to the page
SECTIONS: dict[str, Any] = {
    "sufficiency": {"min_interactions": 1, "min_users_with_two_interactions": 1},
    "experiments": {"min_units_per_arm": 100, "default_unit": "user"},
    "templates": {TEMPLATE: {"base": "personalized", "exploration": {"share": 0.2}}},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "report.png",
                        help="the PNG to write (default: docs/report.png)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="build in this folder and keep it (the home, report/index.html) "
                             "instead of a temporary one")
    parser.add_argument("--users", type=int, default=500, help="synthetic users (default 500)")
    parser.add_argument("--answers", type=int, default=3,
                        help="answers each user asks for in the experiment (default 3)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium",
                        help="the browser to draw with (default: chromium on PATH)")
    return parser.parse_args(argv)


def _environment(home: Path) -> dict[str, str]:
    """The home's environment: SLUICE_HOME, an MLflow SQLite store and the shipped config
    with `SECTIONS` merged in."""
    import yaml

    from sluice.settings import DEFAULT_CONFIG

    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    for name, value in SECTIONS.items():
        config[name] = {**(config.get(name) or {}), **value}
    path = home / "sluice.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return {"SLUICE_HOME": str(home), "SLUICE_CONFIG": str(path),
            "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"}


def _load(settings: Any) -> None:
    """Ingest the landing folder and the raw log, then build the marts."""
    from sluice.warehouse.ingest import Ingestor
    from sluice.warehouse.transform import dbt_build

    Ingestor(settings.warehouse_path, settings.raw_dir, settings.landing_dir).run()
    dbt_build(settings.warehouse_path, settings.home / "dbt", settings.dbt_vars())


def _train_two(settings: Any) -> None:
    """Popularity (v1) as the challenger, ALS (v2) as the champion."""
    from sluice.learn import registry
    from sluice.learn.training import train_tenant

    popular = train_tenant(settings, TENANT, algorithm="popularity", progress=_say)
    als = train_tenant(settings, TENANT, algorithm="als", progress=_say)
    client = registry.client(settings.mlflow_tracking_uri)
    name = settings.registered_model_name(TENANT)
    client.set_registered_model_alias(name, registry.CHAMPION, als.version)
    client.set_registered_model_alias(name, "challenger", popular.version)


def _serve_and_click(settings: Any, spec: Any, answers: int, seed: int) -> int:
    """Every user asks `answers` times on the explored template; slots are clicked (and
    bought) by the generator's rule. Returns how many events were logged."""
    import numpy as np

    from sluice.experiments import Arm, Experiment, Experiments
    from sluice.intake import synthetic
    from sluice.serve.service import Service
    from sluice.vocabulary import TEMPLATES

    Experiments(settings.home).create(Experiment(
        EXPERIMENT, TENANT, (Arm("control", "champion", 0.5), Arm("treatment", "challenger", 0.5)),
        template=TEMPLATE, unit="user", start_ms=int(time.time() * 1000) - 1),
        templates=[*TEMPLATES, *settings.app.templates])
    hidden, rng = synthetic.population(spec), np.random.default_rng(seed)
    service = Service(settings)
    service.start(background=False)
    clicks: list[dict[str, Any]] = []
    try:
        for u in range(spec.users):
            for _ in range(answers):
                answer = service.recommend(service.request(
                    tenant=TENANT, user_id=f"u{u}", num_results=10, template=TEMPLATE))
                items = np.array([int(s.item_id[1:]) for s in answer.items])
                for item, p in zip(items, hidden.click_probability(u, items), strict=True):
                    if rng.random() >= p:
                        continue
                    bought = rng.random() < hidden.purchase_probability(u, int(item))
                    for kind in ("click", "purchase") if bought else ("click",):
                        clicks.append({"event": "interaction", "id": f"sim-{len(clicks)}",
                                       "timestamp": int(time.time() * 1000), "user": f"u{u}",
                                       "item": f"i{item}", "type": kind,
                                       "ranking": answer.recommendation_id})
        service.accept(clicks)
    finally:
        service.stop()
    return len(clicks)


def build(home: Path, users: int, answers: int, seed: int) -> Path:
    """The pipeline of steps 1-5 in `home`; returns the report's HTML file."""
    os.environ.update(_environment(home))
    from sluice.analytics.report import tenant_experiments, write_report
    from sluice.intake import synthetic
    from sluice.learn.training import train_tenant
    from sluice.settings import get_settings
    from sluice.warehouse.engine import from_settings

    settings = get_settings()
    spec = synthetic.SyntheticSpec(users=users, items=300, events=60 * users, days=30,
                                   seed=seed, files=1)
    synthetic.generate(settings.landing_dir, spec)
    _say("history written; ingest and transform ...")
    _load(settings)
    _train_two(settings)
    _say(f"serving {users} users x {answers} answers in experiment {EXPERIMENT} ...")
    _say(f"{_serve_and_click(settings, spec, answers, seed)} clicks and purchases logged")
    _load(settings)
    train_tenant(settings, TENANT, algorithm="als", progress=_say)  # with off-policy estimates
    return write_report(from_settings(settings), settings.mlflow_tracking_uri,
                        settings.registered_model_name(TENANT), home / "report" / "index.html",
                        *tenant_experiments(settings, TENANT), tenant=TENANT)


def screenshot(page: Path, out: Path, chromium: str) -> Path:
    """`page` as headless Chromium draws it WIDTH wide, cut below its last non-blank row and
    saved as a palette PNG (charts and text in 256 colours: a fraction of the RGB size)."""
    from PIL import Image, ImageChops

    with tempfile.TemporaryDirectory(prefix="sluice-shot-",
                                     ignore_cleanup_errors=True) as scratch:
        raw = Path(scratch) / "page.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", "--no-first-run", "--disable-extensions",
                        "--force-device-scale-factor=1", f"--user-data-dir={scratch}/profile",
                        f"--window-size={WIDTH},{TALLEST}", f"--screenshot={raw}",
                        page.as_uri()], check=True, timeout=300, capture_output=True)
        with Image.open(raw) as shot:
            image = shot.convert("RGB")
    blank = Image.new("RGB", image.size, image.getpixel((image.width - 1, image.height - 1)))
    box = ImageChops.difference(image, blank).getbbox()
    if box is None:
        raise SystemExit(f"chromium drew nothing of {page}")
    bottom = min(image.height, box[3] + 40)
    if bottom >= TALLEST:
        raise SystemExit(f"the page is taller than {TALLEST}px: raise TALLEST")
    out.parent.mkdir(parents=True, exist_ok=True)
    image.crop((0, 0, image.width, bottom)).quantize(colors=256).save(out, optimize=True)
    return out


def _say(text: str) -> None:
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.chromium).exists():
        raise SystemExit(f"no browser at {args.chromium}: apt-get install chromium")
    sys.path.insert(0, str(ROOT))  # this checkout's code, whatever the venv points at
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sluice-report-",
                                     ignore_cleanup_errors=True) as scratch:
        home = args.keep or Path(scratch)
        page = build(home.resolve(), args.users, args.answers, args.seed)
        out = screenshot(page, args.out, args.chromium)
        source = page if args.keep else "a temporary home"
    _say(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB) from {source} in "
         f"{time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
