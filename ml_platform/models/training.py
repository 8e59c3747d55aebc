"""Training and evaluating the price model: a scikit-learn pipeline on the shipment features."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

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

    # The bounds scikit-learn's HistGradientBoostingRegressor accepts: a value outside them
    # is refused when the config is read, naming the parameter, not deep inside training.
    learning_rate: float = Field(default=0.1, gt=0)
    max_iter: int = Field(default=300, ge=1)
    max_leaf_nodes: int = Field(default=31, ge=2)
    l2_regularization: float = Field(default=0.0, ge=0)
    holdout_days: int = Field(default=3, ge=1)
    min_training_rows: int = Field(default=5_000, ge=1)
    random_state: int = Field(default=0, ge=0, le=2**32 - 1)


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


def split_holdout(
    features: pl.DataFrame | pl.LazyFrame, holdout_days: int, columns: list[str] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Train on every day before the last ``holdout_days`` days; hold those out.

    Only ``columns`` (default: every column) are materialized; from a LazyFrame over the
    stored partitions, each side reads just its own days and those columns.
    """
    lazy = features.lazy()
    if columns is not None:
        lazy = lazy.select(columns)
    last = lazy.select(pl.col("partition_date").max()).collect().item()
    if last is None:
        raise TrainingDataError("the training window holds no rows")
    cutoff = last - timedelta(days=holdout_days - 1)
    return (
        lazy.filter(pl.col("partition_date") < cutoff).collect(),
        lazy.filter(pl.col("partition_date") >= cutoff).collect(),
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


def fit_encoder(pipeline, train: pl.DataFrame) -> None:
    """Fit the pipeline's encoder on each distinct value once, not on every row.

    The OrdinalEncoder's categories are the sorted distinct values whatever their counts,
    so a frame holding each value of each categorical column once (padded by repetition)
    gives the same fitted encoder as the whole training frame, without turning millions
    of strings into Python objects.
    """
    distinct = {c: train[c].unique(maintain_order=True) for c in CATEGORICAL}
    n = max(len(v) for v in distinct.values())
    sample = pl.DataFrame(
        [
            *(pl.concat([v, v.gather([0] * (n - len(v)))]) for v in distinct.values()),
            *(pl.repeat(0, n, dtype=train.schema[c], eager=True).alias(c) for c in NUMERIC),
        ]
    )
    pipeline.named_steps["encode"].fit(sample.select(FEATURES))


def design_matrix(pipeline, frame: pl.DataFrame) -> np.ndarray:
    """What the pipeline's fitted encoder outputs for ``frame``, computed in polars.

    Categorical codes are the positions in the encoder's categories (an unseen value -1; a
    missing one -2 if missing values were seen at fit, else -1 like any unseen value), then
    the numeric columns, all float64 (what the regressor bins anyway), converted to numpy in
    one allocation. Equal to ``pipeline.named_steps["encode"].transform(frame)`` (tested),
    without its object arrays and copies.
    """
    encoder = pipeline.named_steps["encode"].named_transformers_["categorical"]
    codes = []
    for name, categories in zip(CATEGORICAL, encoder.categories_, strict=True):
        values = categories.tolist()
        known = [c for c in values if isinstance(c, str)]
        missing = -2.0 if len(known) < len(values) else -1.0
        code = pl.col(name).replace_strict(
            known, [float(values.index(c)) for c in known], default=-1.0, return_dtype=pl.Float64
        )
        codes.append(pl.when(pl.col(name).is_null()).then(missing).otherwise(code).alias(name))
    numeric = [pl.col(c).cast(pl.Float64) for c in NUMERIC]
    return frame.select(*codes, *numeric).to_numpy()


def fit(train: pl.DataFrame, params: Hyperparameters, columns: list[str] | None = None):
    """The fitted pipeline; the regressor learns from a float64 matrix built in polars.

    Equivalent to ``build_pipeline(params).fit(train.select(FEATURES), y)`` (the same
    encoder, the same matrix, so the same trees), without the object arrays and the
    intermediate copies that fitting the whole pipeline on a polars frame makes.
    """
    if columns is not None and list(columns) != FEATURES:
        raise ValueError(f"the price pipeline is built for {FEATURES}, not {columns}")
    pipeline = build_pipeline(params)
    fit_encoder(pipeline, train)
    X = design_matrix(pipeline, train)
    y = train[TARGET].to_numpy()
    pipeline.named_steps["model"].fit(X, y)
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


def training_columns() -> list[str]:
    """Every column training reads: the day, the model's features, the label."""
    return ["partition_date", *FEATURES, TARGET]


def train_and_evaluate(
    features: pl.DataFrame | pl.LazyFrame, params: Hyperparameters
) -> TrainingResult:
    """Fit on the window's days before the holdout, evaluate on the holdout days.

    Pass a LazyFrame over the stored partitions: only the training columns are read (the
    ids, timestamps and lane names of millions of rows are not), and the training rows are
    released once the regressor's matrix is built.
    """
    columns = list(FEATURES)
    train, holdout = split_holdout(features, params.holdout_days, training_columns())
    check_training_window(train, holdout, params)
    actual = holdout[TARGET].to_numpy()
    baseline = naive_baseline(train, holdout)
    rows_train, trained_days = train.height, day_range(train)
    started = time.perf_counter()
    pipeline = build_pipeline(params)
    fit_encoder(pipeline, train)
    X = design_matrix(pipeline, train)
    y = train[TARGET].to_numpy()
    del train  # the matrix and the label are all the regressor needs
    pipeline.named_steps["model"].fit(X, y)
    seconds = time.perf_counter() - started
    del X, y
    return TrainingResult(
        pipeline=pipeline,
        rows_train=rows_train,
        rows_holdout=holdout.height,
        # Scored through the whole pipeline, exactly as predictions will score it.
        metrics=regression_metrics(actual, pipeline.predict(holdout.select(columns))),
        baseline_metrics=regression_metrics(actual, baseline),
        seconds=seconds,
        holdout=holdout,
        feature_columns=columns,
        trained_days=trained_days,
        holdout_days=day_range(holdout),
    )
