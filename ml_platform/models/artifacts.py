"""Model artifacts as skops files, never pickle: explicit trusted types, sha256 on every load."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

# Every type beyond skops' defaults that a fitted price pipeline holds. A pipeline needing
# anything else is refused at save time, so every stored artifact is loadable with this list.
TRUSTED_TYPES = [
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
]
FORMAT = "skops"


class ArtifactError(ValueError):
    """An artifact that must not be loaded; the message names the artifact and the reason."""


@dataclass
class TrainedModel:
    """A fitted scikit-learn pipeline and the columns it predicts from."""

    pipeline: Any
    feature_columns: list[str]
    # Where a loaded model came from (week, run id, URI, sha256); empty for a fresh one.
    source: dict = field(default_factory=dict)


def dump_model(model: TrainedModel) -> bytes:
    import skops.io as sio  # 2.6 s of imports (scikit-learn, scipy): only where models are

    data = sio.dumps(model.pipeline)
    untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    if untrusted:
        raise ArtifactError(
            f"refusing to store a model whose artifact needs untrusted types {untrusted}; "
            "review them and extend ml_platform.models.artifacts.TRUSTED_TYPES"
        )
    return data


def load_model(data: bytes, expected_sha256: str, source: str) -> Any:
    """The fitted pipeline in ``data``, after checking its checksum and its types."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ArtifactError(
            f"{source}: sha256 mismatch (recorded {expected_sha256}, found {actual}); "
            "the artifact was changed after it was written"
        )
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    # skops audits every type against its defaults plus TRUSTED_TYPES before constructing
    # anything, so a separate get_untrusted_types pass up front would only parse the
    # artifact twice (a third of the load, paid by every prediction run); it runs only to
    # name the offending types once the load has been refused.
    try:
        return sio.loads(data, trusted=TRUSTED_TYPES)
    except UntrustedTypesFoundException:
        untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
        raise ArtifactError(
            f"{source}: holds untrusted types {untrusted}; refusing to load it"
        ) from None
