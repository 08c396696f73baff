"""MLflow "model from code" entry: logged as the model's code, so nothing is pickled."""

import mlflow.models

from sluice.learn.pyfunc import SluiceModel

mlflow.models.set_model(SluiceModel())
