"""Prefect flows: thin wrappers over the `sluice` library."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: see sluice/__init__.py
