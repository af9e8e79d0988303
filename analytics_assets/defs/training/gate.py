"""The promotion rule: blocking checks first, then a floor, then a margin over the champion."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Policy:
    metric: str
    """The holdout metric that decides."""
    higher_is_better: bool
    floor: float
    """The worst acceptable value of ``metric`` (a minimum, or a maximum if lower is better)."""
    margin: float
    """How much better than the champion's, on the same holdout, the challenger must be."""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    passed: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str


def above_floor(policy: Policy, value: float) -> Check:
    ok = not math.isnan(value) and (
        value >= policy.floor if policy.higher_is_better else value <= policy.floor
    )
    relation = ">=" if policy.higher_is_better else "<="
    return Check(ok, f"{policy.metric} {value:.4f} {'' if ok else 'not '}{relation} {policy.floor}")


def improvement(policy: Policy, challenger: float, champion: float) -> float:
    """How much better the challenger is (positive: better), in the metric's units."""
    return challenger - champion if policy.higher_is_better else champion - challenger


def decide(
    policy: Policy,
    challenger: float,
    champion: float | None,
    checks: dict[str, Check],
) -> Verdict:
    """Promote only if every check passed, and the challenger beats the champion's score on the
    same holdout by at least ``policy.margin`` (a first model needs only the checks)."""
    failed = {name: check for name, check in checks.items() if not check.passed}
    if failed:
        reasons = "; ".join(f"{name}: {check.detail}" for name, check in failed.items())
        return Verdict(False, f"blocked by checks - {reasons}")
    if champion is None:
        return Verdict(True, f"first model: {policy.metric} {challenger:.4f} passes the floor")
    gain = improvement(policy, challenger, champion)
    comparison = (
        f"{policy.metric} {challenger:.4f} vs champion {champion:.4f} "
        f"(improvement {gain:+.4f}, margin {policy.margin})"
    )
    if math.isnan(champion) or (gain >= policy.margin and gain > 0):
        return Verdict(True, f"beats the champion: {comparison}")
    return Verdict(False, f"does not beat the champion by the margin: {comparison}")
