"""Rollbacks undo promotions one at a time, as a stack (the champion step and the CLI both
decide the target with ``rollback_target``)."""

from ml_platform.provenance.champion import live_models, rollback_target


def _promotion(model: int, reason: str = "new model", rollback: bool | None = None) -> dict:
    entry = {
        "model_week": f"week-{model}",
        "model_run_id": f"run-{model}",
        "model_storage_id": model,
        "model_sha256": f"{model:064d}",
        "promoted_at": f"t{model}",
        "reason": reason,
    }
    if rollback is not None:
        entry["rollback"] = rollback
    return entry


def test_a_second_rollback_goes_back_one_model_further():
    """A, B, C live in turn; two rollbacks give B then A, not B then C (the rejected one)."""
    history = [_promotion(1), _promotion(2), _promotion(3)]
    target, _ = rollback_target(history)
    assert target["model_storage_id"] == 2
    history.append({**_promotion(2, "rollback: C was wrong", rollback=True)})
    target, message = rollback_target(history)
    assert target["model_storage_id"] == 1, message
    history.append({**_promotion(1, "rollback: B too", rollback=True)})
    target, message = rollback_target(history)
    assert target is None and message.startswith("nothing to roll back to")
    assert [e["model_storage_id"] for e in live_models(history)] == [1]


def test_older_rollbacks_are_known_by_their_reason_and_re_promotions_change_nothing():
    history = [
        _promotion(1),
        _promotion(2),
        _promotion(2, "re-promoted"),
        _promotion(3),
        _promotion(2, "rollback: written before promotions recorded it"),
        _promotion(3, "promoted again, after all"),
    ]
    assert [e["model_storage_id"] for e in live_models(history)] == [1, 2, 3]
    target, _ = rollback_target(history)
    assert target["model_storage_id"] == 2
