"""The HTTP face of Sluice: a thin FastAPI app over `sluice.serve.service`."""

import sluice  # noqa: F401 - first: it sets OPENBLAS_NUM_THREADS before numpy loads
