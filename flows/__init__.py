"""Prefect flows: thin wrappers over the `sluice` library."""

import sluice  # noqa: F401 - first: it sets OPENBLAS_NUM_THREADS before Prefect loads numpy
