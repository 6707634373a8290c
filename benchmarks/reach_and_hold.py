"""Time to an expert's level, counted as "reach and hold" (issue 20): the training seconds at the
first evaluation that reaches the bar and from which every later evaluation, up to the end of the
budget both learners share, stays at or above the hold line (the bar less the evaluation's noise).
The first crossing is reported beside it: alone it rewards a learner that touches the bar and falls away.

A curve is a list of evaluations in training order: ``{"env_steps", "train_s", "score"}``.
"""

from __future__ import annotations


def first_crossing(curve: list[dict[str, float]], bar: float) -> dict[str, float] | None:
    return next((point for point in curve if point["score"] >= bar), None)


def reach_and_hold(curve: list[dict[str, float]], bar: float, hold: float) -> dict[str, float] | None:
    """The first evaluation at or above ``bar`` after which none falls below ``hold``."""
    after_last_drop = max((i + 1 for i, point in enumerate(curve) if point["score"] < hold), default=0)
    return first_crossing(curve[after_last_drop:], bar)


def point_times(point: dict[str, float] | None, kind: str) -> dict[str, float | None]:
    """Training seconds and env steps at ``point`` (None: never)."""
    return {f"{kind}_s": round(point["train_s"], 1) if point else None, f"{kind}_env_steps": int(point["env_steps"]) if point else None}


def seed_times(curve: list[dict[str, float]], bar: float, hold: float) -> dict[str, float | None]:
    """One run's reach-and-hold and first-crossing times, its final and best scores and its budget in seconds."""
    return {
        **point_times(reach_and_hold(curve, bar, hold), "reach_and_hold"),
        **point_times(first_crossing(curve, bar), "first_crossing"),
        "final": round(curve[-1]["score"], 3),
        "best": round(max(point["score"] for point in curve), 3),
        "budget_s": round(curve[-1]["train_s"], 1),
    }


def median_time(times: list[float | None]) -> float | None:
    """Median with "never" (None) ranked after every time; None when the median itself is never."""
    ranked = sorted(times, key=lambda t: float("inf") if t is None else t)
    middle = ranked[(len(ranked) - 1) // 2 : len(ranked) // 2 + 1]
    return None if None in middle else round(sum(middle) / len(middle), 1)
