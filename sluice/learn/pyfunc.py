"""The MLflow pyfunc face of a Sluice model: artifacts are the `.npz` bundle, nothing pickled."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc.model import PythonModel
from mlflow.types.schema import ColSpec, Schema

from sluice.bundle import ModelBundle
from sluice.scoring import top_n

DEFAULT_NUM_RESULTS = 10
# what `mlflow.pyfunc.load_model(...).predict` takes and gives: a count is an integer (an
# inferred signature made it a required double, refusing `num_results: 5`), and optional
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "user_id"),
                   ColSpec("long", "num_results", required=False)]),
    outputs=Schema([ColSpec("string", "user_id"), ColSpec("long", "rank"),
                    ColSpec("string", "item_id"), ColSpec("double", "score")]))


class SluiceModel(PythonModel):
    """predict(DataFrame[user_id, num_results?]) -> long DataFrame[user_id, rank, item_id,
    score]: each user's best unseen items (a user the model did not train on: the popular
    ones), num_results each (default 10)."""

    def load_context(self, context: Any) -> None:
        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return recommend_frame(self.bundle, model_input)


def recommend_frame(bundle: ModelBundle, model_input: pd.DataFrame) -> pd.DataFrame:
    rows: list[tuple[str, int, str, float]] = []
    counts = model_input.get("num_results", pd.Series([DEFAULT_NUM_RESULTS] * len(model_input)))
    for user_id, n in zip(model_input["user_id"].astype(str),
                          pd.Series(counts).fillna(DEFAULT_NUM_RESULTS), strict=True):
        index = bundle.user_index.get(user_id)
        if index is None:
            picks = bundle.popular[: int(n)]
            scores = bundle.popular_scores[: int(n)]
        else:
            seen = bundle.user_items.indices[
                bundle.user_items.indptr[index]:bundle.user_items.indptr[index + 1]]
            all_scores = bundle.item_factors @ bundle.user_factors[index]
            picks = top_n(all_scores, int(n), exclude=seen)
            scores = all_scores[picks]
        rows.extend((user_id, rank + 1, str(bundle.item_ids[i]), float(s))
                    for rank, (i, s) in enumerate(zip(picks, np.asarray(scores), strict=True)))
    return pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "score"]).astype(
        {"rank": "int64"})
