"""The HTTP face of Sluice: a thin FastAPI app over `sluice.serve.service`."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: see sluice/__init__.py
