"""Training and evaluating the price model: a scikit-learn pipeline on the shipment features."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import polars as pl
from pydantic import BaseModel

CATEGORICAL = ["transport_mode", "carrier", "origin_country", "destination_country"]
NUMERIC = [
    "distance_km",
    "weight_kg",
    "volume_m3",
    "day_of_week",
    "day_of_year",
    "lane_shipments_28d",
    "lane_mean_price_28d",
    "lane_mean_price_per_km_28d",
]
FEATURES = CATEGORICAL + NUMERIC
TARGET = "price_eur"


class TrainingDataError(ValueError):
    """The training window cannot produce a trustworthy model."""


class MissingFeaturesError(ValueError):
    """The frame to score lacks feature columns the model was trained with."""


class Hyperparameters(BaseModel):
    """The model's knobs; the Dagster run config of models/price_model extends this."""

    learning_rate: float = 0.1
    max_iter: int = 300
    max_leaf_nodes: int = 31
    l2_regularization: float = 0.0
    holdout_days: int = 3
    min_training_rows: int = 5_000
    random_state: int = 0


def build_pipeline(params: Hyperparameters):
    """Ordinal-encoded categoricals and raw numerics into a gradient-boosted regressor on log price."""
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    encode = ColumnTransformer(
        [
            (
                "categorical",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2
                ),
                CATEGORICAL,
            ),
            ("numeric", "passthrough", NUMERIC),
        ]
    )
    regressor = HistGradientBoostingRegressor(
        learning_rate=params.learning_rate,
        max_iter=params.max_iter,
        max_leaf_nodes=params.max_leaf_nodes,
        l2_regularization=params.l2_regularization,
        categorical_features=list(range(len(CATEGORICAL))),
        random_state=params.random_state,
    )
    # Prices span four orders of magnitude: fit the log so errors are relative.
    model = TransformedTargetRegressor(regressor=regressor, func=np.log, inverse_func=np.exp)
    return Pipeline([("encode", encode), ("model", model)])


def split_holdout(features: pl.DataFrame, holdout_days: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Train on every day before the last ``holdout_days`` days; hold those out."""
    last = features["partition_date"].max()
    cutoff = last - timedelta(days=holdout_days - 1)
    return (
        features.filter(pl.col("partition_date") < cutoff),
        features.filter(pl.col("partition_date") >= cutoff),
    )


def check_training_window(
    train: pl.DataFrame, holdout: pl.DataFrame, params: Hyperparameters
) -> None:
    if train.height < params.min_training_rows:
        raise TrainingDataError(
            f"only {train.height} training rows before the holdout (minimum "
            f"{params.min_training_rows}); land or backfill more feature days first"
        )
    if holdout.height == 0:
        raise TrainingDataError("the holdout window holds no rows")


def fit(train: pl.DataFrame, params: Hyperparameters, columns: list[str] | None = None):
    pipeline = build_pipeline(params)
    pipeline.fit(train.select(columns or FEATURES), train[TARGET].to_numpy())
    return pipeline


def model_feature_columns(model) -> list[str]:
    """The columns a model was trained on: what it recorded, else what the pipeline saw at fit."""
    recorded = getattr(model, "feature_columns", None)
    if recorded:
        return list(recorded)
    pipeline = getattr(model, "pipeline", model)
    seen = getattr(pipeline, "feature_names_in_", None)
    if seen is None:
        raise MissingFeaturesError("the model records no feature columns; cannot score it safely")
    return [str(c) for c in seen]


def predict(model, features: pl.DataFrame) -> np.ndarray:
    """Score ``features`` with exactly the columns ``model`` was trained on, in that order.

    ``model`` is a :class:`~ml_platform.models.artifacts.TrainedModel` (its recorded columns)
    or a fitted pipeline (the columns it saw at fit). Today's feature list plays no part: a
    model trained before a feature was added or removed is scored on its own features, and
    fails naming the ones the frame lacks.
    """
    columns = model_feature_columns(model)
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise MissingFeaturesError(
            f"the model was trained on feature columns {sorted(missing)} that the features to "
            f"score do not have (they have {len(features.columns)} columns); re-materialize "
            "the features with the code the model was trained on, or promote a model trained "
            "on today's features"
        )
    pipeline = getattr(model, "pipeline", model)
    return pipeline.predict(features.select(columns))


def naive_baseline(train: pl.DataFrame, rows: pl.DataFrame) -> np.ndarray:
    """The lane's trailing mean price, else the mode's median price per km times the distance."""
    per_km = train.group_by("transport_mode").agg(
        (pl.col(TARGET) / pl.col("distance_km")).median().alias("mode_price_per_km")
    )
    overall = float((train[TARGET] / train["distance_km"]).median())
    return (
        rows.join(per_km, on="transport_mode", how="left")
        .select(
            pl.coalesce(
                "lane_mean_price_28d",
                pl.col("mode_price_per_km").fill_null(overall) * pl.col("distance_km"),
            )
        )
        .to_series()
        .to_numpy()
    )


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    error = predicted - actual
    residual = float(np.sum(error**2))
    total = float(np.sum((actual - actual.mean()) ** 2)) or 1.0
    return {
        "mae": float(np.mean(np.abs(error))),
        "mape": float(np.mean(np.abs(error) / actual)),
        "r2": 1.0 - residual / total,
    }


@dataclass
class TrainingResult:
    pipeline: object
    rows_train: int
    rows_holdout: int
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    seconds: float
    holdout: pl.DataFrame
    feature_columns: list[str] = field(default_factory=list)
    # First and last day of the rows the model was fitted on, and of its holdout rows.
    trained_days: dict[str, str] = field(default_factory=dict)
    holdout_days: dict[str, str] = field(default_factory=dict)


def day_range(frame: pl.DataFrame) -> dict[str, str]:
    return {
        "first_day": frame["partition_date"].min().isoformat(),
        "last_day": frame["partition_date"].max().isoformat(),
    }


def train_and_evaluate(features: pl.DataFrame, params: Hyperparameters) -> TrainingResult:
    train, holdout = split_holdout(features, params.holdout_days)
    check_training_window(train, holdout, params)
    columns = list(FEATURES)
    started = time.perf_counter()
    pipeline = fit(train, params, columns)
    seconds = time.perf_counter() - started
    actual = holdout[TARGET].to_numpy()
    return TrainingResult(
        pipeline=pipeline,
        rows_train=train.height,
        rows_holdout=holdout.height,
        metrics=regression_metrics(actual, pipeline.predict(holdout.select(columns))),
        baseline_metrics=regression_metrics(actual, naive_baseline(train, holdout)),
        seconds=seconds,
        holdout=holdout,
        feature_columns=columns,
        trained_days=day_range(train),
        holdout_days=day_range(holdout),
    )
