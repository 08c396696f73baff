"""Sluice: a self-hosted recommendation platform (the domain library)."""

import os

# One BLAS thread per process: on 2 cores, OpenBLAS's own threads fight the server's and
# implicit's (a 100k x 64 scoring pass goes from 1 ms to 8 ms). Set before numpy loads: the
# one place it is set (flows/, serving/ and cli/ import this package before anything else).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
