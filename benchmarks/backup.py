"""What the backup's checksums cost: `sluice backup` and `sluice restore` of a home with a raw
log of 200,000 events and a landing folder of random bytes, and within each the time spent
hashing (and flushing) every file, or verifying it before the restore writes anything.
`python benchmarks/backup.py [--landing-mib 512]`
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sluice.intake.eventlog import EventLog  # noqa: E402
from sluice.operate import backup as saving  # noqa: E402
from sluice.operate.restore import restore, verify  # noqa: E402
from sluice.settings import Settings  # noqa: E402
from sluice.warehouse.ingest import Ingestor  # noqa: E402
from tests.utils.factories import environment, interaction  # noqa: E402


def home(root: Path) -> Settings:
    env = environment(root)
    return Settings(home=root, config=Path(env["SLUICE_CONFIG"]),
                    mlflow_tracking_uri=env["MLFLOW_TRACKING_URI"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--landing-mib", type=int, default=512)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sluice-backup-bench-"))
    try:
        old = home(root / "old")
        log = EventLog(old.raw_dir)
        for _ in range(200):
            log.append([interaction(f"u{n % 500}", f"i{n % 300}") for n in range(1000)])
        log.close()
        old.landing_dir.mkdir(parents=True)
        with open(old.landing_dir / "archive.dat", "wb") as big:
            for _ in range(args.landing_mib):
                big.write(os.urandom(1 << 20))
        Ingestor(old.warehouse_path, old.raw_dir, old.landing_dir).run()
        quiet = lambda _: None  # noqa: E731
        started = time.perf_counter()
        info = saving.backup(old, root / "backup", say=quiet)
        backup_s = time.perf_counter() - started
        started = time.perf_counter()
        saving.digests(root / "backup")
        digest_s = time.perf_counter() - started
        started = time.perf_counter()
        restore(home(root / "new"), root / "backup", say=quiet)
        restore_s = time.perf_counter() - started
        started = time.perf_counter()
        verify(root / "backup", info, say=quiet)
        verify_s = time.perf_counter() - started
        size = sum(size for size, _ in info["files"].values()) / 2**20
        print(f"| backup of {size:,.0f} MiB in {len(info['files'])} files | seconds | share |")
        print("| --- | --- | --- |")
        print(f"| backup | {backup_s:.2f} | 100% |")
        print(f"| of it, hashing and flushing every file | {digest_s:.2f} | "
              f"{digest_s / backup_s:.0%} |")
        print(f"| restore | {restore_s:.2f} | 100% |")
        print(f"| of it, verifying every file first | {verify_s:.2f} | "
              f"{verify_s / restore_s:.0%} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
