"""The models the service answers with: per model the champion (``<name>:latest`` in the BentoML
model store) and the challenger the gate kept (``<name>_challenger:latest``), each verified
against its recorded sha256 before loading, and swapped in when a newer one is promoted while
requests go on with the one they started with."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from analytics_assets import settings
from analytics_assets.lib import bento_store
from analytics_assets.lib.artifacts import BENTO_MODEL_FOLDER, verify
from analytics_assets.lib.names import CHALLENGER_SUFFIX, CHURN_MODEL, CLV_MODEL
from analytics_assets.lib.online_reader import OnlineReader

logger = logging.getLogger("bentoml.customer_scoring")

Scorer = Callable[[dict[str, np.ndarray], dict], dict[str, np.ndarray]]


@dataclass(frozen=True)
class LoadedModel:
    name: str
    role: str
    tag: str
    version: str
    feature_service: str
    features: list[str]
    """The model's inputs, in its order."""
    reader: OnlineReader
    score: Scorer
    """Feature columns (and call parameters) to output columns."""
    scorer: str = ""
    """What computes the outputs (and, for a fallback, why)."""
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Slot:
    champion: LoadedModel | None = None
    challenger: LoadedModel | None = None


def model_store():
    """The store the service loads from (see :func:`bento_store.serving_store`)."""
    return bento_store.serving_store(settings.bentoml_home())


def churn_scorer(bento_model) -> tuple[list[str], Scorer, str]:
    """The classifier, fed a float matrix in its own feature order (a DataFrame costs a third
    of a one-customer prediction in validation alone). Scored by its converted trees (treelite
    GTIL, :mod:`analytics_assets.scoring.churn_trees`) when the promotion saved them, checked
    equal to scikit-learn and verified by their own sha256; else by scikit-learn, saying why."""
    import warnings

    import mlflow.sklearn

    from analytics_assets.lib.bento_store import extra_digest_key
    from analytics_assets.scoring import churn_trees

    folder = Path(bento_model.path_of(BENTO_MODEL_FOLDER))
    model = mlflow.sklearn.load_model(str(folder))
    features = [str(name) for name in model.feature_names_in_]
    metadata = bento_model.info.metadata
    fast = Path(bento_model.path_of(churn_trees.FOLDER))
    if not settings.serving_fast_scorer():
        why = "fast scorer off (SCORING_FAST_SCORER=0)"
    elif fast.is_dir():
        digest = metadata.get(extra_digest_key(churn_trees.FOLDER))
        verify(fast, digest, f"fast scorer of BentoML model {bento_model.tag}")
        trees = churn_trees.load(fast)
        warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)

        def fast_score(columns: dict[str, np.ndarray], params: dict) -> dict[str, np.ndarray]:
            matrix = np.column_stack([columns[name] for name in features]).astype(float)
            if len(matrix) >= churn_trees.BATCH_ROWS:  # equal outputs; scikit-learn is faster
                return {"churn_probability": model.predict_proba(matrix)[:, 1]}
            return {"churn_probability": trees(matrix)}

        return features, fast_score, metadata.get("fast_scorer", "treelite GTIL")
    else:
        why = metadata.get("fast_scorer_unavailable", "no fast scorer saved with this model")
    warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)

    def score(columns: dict[str, np.ndarray], params: dict) -> dict[str, np.ndarray]:
        matrix = np.column_stack([columns[name] for name in features]).astype(float)
        return {"churn_probability": model.predict_proba(matrix)[:, 1]}

    return features, score, f"scikit-learn (fallback: {why})"


def value_scorer(bento_model) -> tuple[list[str], Scorer, str]:
    """The fitted BG/NBD + Gamma-Gamma parameters from the MLflow model's ``params`` artifact,
    scored with the same formulas as its pyfunc (without the pyfunc's per-call overhead)."""
    import yaml

    from analytics_assets.scoring.customer_value import INPUTS, CustomerValueParams, predict

    folder = Path(bento_model.path_of(BENTO_MODEL_FOLDER))
    flavor = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
    params = CustomerValueParams.load(folder / flavor["artifacts"]["params"]["path"])

    def score(columns: dict[str, np.ndarray], call: dict) -> dict[str, np.ndarray]:
        return predict(params, columns, call["horizon_days"])

    return list(INPUTS), score, "BG/NBD + Gamma-Gamma formulas (numpy)"


SCORERS: dict[str, Callable[..., tuple[list[str], Scorer, str]]] = {
    CHURN_MODEL: churn_scorer,
    CLV_MODEL: value_scorer,
}


def load(bento_model, name: str, role: str, feature_store) -> LoadedModel:
    """A verified, loaded model with a reader of its feature service's online features."""
    folder = Path(bento_model.path_of(BENTO_MODEL_FOLDER))
    verify(folder, bento_model.info.metadata.get("sha256"), f"BentoML model {bento_model.tag}")
    features, score, scorer = SCORERS[name](bento_model)
    service_name = bento_model.info.labels["feature_service"]
    service = feature_store.get_feature_service(service_name)
    views = {p.name: [f.name for f in p.features] for p in service.feature_view_projections}
    missing = set(features) - {f for names in views.values() for f in names}
    if missing:
        raise ValueError(f"{bento_model.tag} needs {sorted(missing)}, not in {service_name}")
    return LoadedModel(
        name=name,
        role=role,
        tag=str(bento_model.tag),
        version=bento_model.info.labels["mlflow_version"],
        feature_service=service_name,
        features=features,
        reader=OnlineReader(feature_store, views),
        score=score,
        scorer=scorer,
    )


def _newer(challenger: LoadedModel, champion: LoadedModel | None) -> bool:
    if champion is None:
        return True
    try:
        return int(challenger.version) > int(champion.version)
    except ValueError:
        return challenger.version != champion.version


class Models:
    """Current champion and challenger of each model. :meth:`refresh` loads whatever is newer
    in the store; a daemon thread calls it every ``interval`` seconds.

    With ``switch_after`` seconds (several workers), a newly loaded model is served from the
    instant it was promoted plus ``switch_after``, not from when this worker loaded it: every
    worker of the server switches at that same instant, so clients see the version move once
    rather than flip between workers that found it a few seconds apart (a worker that loads
    it later than that switches at once). Until then :meth:`slot` answers with the old one."""

    def __init__(
        self, store, feature_store, names=(CHURN_MODEL, CLV_MODEL), switch_after: float = 0.0
    ) -> None:
        self.store = store
        self.feature_store = feature_store
        self.switch_after = switch_after
        self.slots: dict[str, Slot] = {name: Slot() for name in names}
        self.pending: dict[str, tuple[Slot, float]] = {}
        self.errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def ready(self) -> bool:
        return all(slot.champion is not None for slot in self.slots.values())

    def refresh(self) -> list[str]:
        """Swap in every model whose latest tag differs from the one served; returns their
        tags. A model that fails to load leaves the one served in place (see ``errors``)."""
        import bentoml
        from bentoml.exceptions import NotFound

        changed = []
        with self._lock:
            for name, slot in self.slots.items():
                slot, _ = self.pending.get(name, (slot, 0.0))  # compare with what comes next
                current = {"champion": slot.champion, "challenger": slot.challenger}
                promoted_at = 0.0
                for role, suffix in (("champion", ""), ("challenger", CHALLENGER_SUFFIX)):
                    wanted = f"{name}{suffix}:latest"
                    try:
                        latest = bentoml.models.get(wanted, _model_store=self.store)
                    except NotFound:
                        current[role] = None
                        self.errors.pop(wanted, None)
                        continue
                    except Exception as error:  # a corrupt store entry: this model only
                        self.errors[wanted] = f"{type(error).__name__}: {error}"
                        logger.exception("could not read %s from the model store", wanted)
                        continue
                    self.errors.pop(wanted, None)
                    served = current[role]
                    if served is not None and served.tag == str(latest.tag):
                        continue
                    try:
                        current[role] = load(latest, name, role, self.feature_store)
                    except Exception as error:  # keep serving what works; say why
                        self.errors[f"{latest.tag}"] = f"{type(error).__name__}: {error}"
                        logger.exception("could not load %s", latest.tag)
                        continue
                    self.errors.pop(str(latest.tag), None)
                    changed.append(str(latest.tag))
                    promoted_at = max(promoted_at, latest.info.creation_time.timestamp())
                    logger.info("serving %s as %s of %s", latest.tag, role, name)
                challenger = current["challenger"]
                if challenger is not None and not _newer(challenger, current["champion"]):
                    # the champion it challenged has been replaced: promotion removes the
                    # challenger from the store; never serve one older than the champion
                    challenger = None
                self._switch(name, Slot(current["champion"], challenger), promoted_at)
        return changed

    def _switch(self, name: str, new: Slot, promoted_at: float) -> None:
        served = self.slots[name]
        if new == self.pending.get(name, (served,))[0]:
            return
        at = promoted_at + self.switch_after
        if served.champion is None or self.switch_after <= 0 or time.time() >= at:
            self.slots[name] = new
            self.pending.pop(name, None)
        else:
            self.pending[name] = (new, at)

    def slot(self, name: str) -> Slot:
        """The champion and challenger of ``name`` as one value: a request reads it once, so
        a reload in the middle of it cannot mix versions."""
        pending = self.pending.get(name)
        if pending is not None and time.time() >= pending[1]:
            with self._lock:
                if self.pending.get(name) is pending:
                    self.slots[name] = pending[0]
                    del self.pending[name]
        return self.slots[name]

    def watch(self, interval: float) -> threading.Thread:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.refresh()
                except Exception:
                    logger.exception("model refresh failed")

        thread = threading.Thread(target=loop, name="model-refresh", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def served(self) -> list[LoadedModel]:
        return [
            model
            for name in self.slots
            for model in (self.slot(name).champion, self.slot(name).challenger)
            if model is not None
        ]
