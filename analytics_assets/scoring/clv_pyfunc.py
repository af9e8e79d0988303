"""The customer value model as MLflow logs it ("models from code": this file and the fitted
parameters are the artifact, nothing pickled). Imported by MLflow when loading, not by us."""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from analytics_assets.scoring.customer_value import INPUTS, CustomerValueParams, predict

DEFAULT_HORIZON_DAYS = 180


class CustomerValueModel(PythonModel):
    def load_context(self, context) -> None:
        self.params = CustomerValueParams.load(context.artifacts["params"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        horizon = float((params or {}).get("horizon_days", DEFAULT_HORIZON_DAYS))
        columns = {name: model_input[name].to_numpy(dtype=float) for name in INPUTS}
        return pd.DataFrame(predict(self.params, columns, horizon))


mlflow.models.set_model(CustomerValueModel())
