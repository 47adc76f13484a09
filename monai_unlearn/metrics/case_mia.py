# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Case-level membership inference for segmentation: a loss-threshold attack on case-mean voxel losses.

A network tends to fit its training cases more closely than unseen ones, so a low case loss hints that the case
was a training member. The attack scores each case by its negative case-mean voxel cross-entropy. It reports the area
under the ROC curve (AUC) for telling members (the forget cases of the training split) from non-members (held-out
cases, of the same group as the forget cases when enough exist). The AUC is 0.5 when the losses carry no membership
signal. The target after unlearning is the retrain oracle's AUC, not 0.5: a forget set that differs from
the held-out cases (large-volume outliers, for example) can score away from 0.5 even for the oracle.

The attack is the loss-threshold attack of S. Yeom, I. Giacomelli, M. Fredrikson and S. Jha, "Privacy Risk in Machine
Learning: Analyzing the Connection to Overfitting", IEEE CSF 2018 (arXiv:1709.01604), applied to whole cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["case_loss_mia"]


def case_loss_mia(
    member_losses: Sequence[float] | np.ndarray, non_member_losses: Sequence[float] | np.ndarray
) -> dict[str, Any]:
    """Run the case-level loss-threshold attack and return its AUC and best balanced accuracy.

    Args:
        member_losses: case-mean losses of member cases (the forget cases of the training split).
        non_member_losses: case-mean losses of non-member cases (held-out cases).

    Returns:
        ``auc``: probability that a random member has a lower loss than a random non-member (ties count half);
        ``balanced_accuracy``: the best balanced accuracy over all loss thresholds (an optimistic attacker who is given
        the best threshold, so 0.5 means no signal); ``members`` and ``non_members``: the case counts; and
        ``member_mean_loss`` and ``non_member_mean_loss``.

    Raises:
        ValueError: when either group is empty or holds a non-finite loss.
    """
    members = np.asarray(member_losses, dtype=np.float64).reshape(-1)
    non_members = np.asarray(non_member_losses, dtype=np.float64).reshape(-1)
    if members.size == 0 or non_members.size == 0:
        raise ValueError(
            f"The case-level attack needs member and non-member cases, got {members.size} and {non_members.size}."
        )
    if not (np.isfinite(members).all() and np.isfinite(non_members).all()):
        raise ValueError("Case losses must be finite for the membership inference attack; check the evaluation.")

    # AUC as the Mann-Whitney statistic: compare every member with every non-member.
    lower = (members[:, None] < non_members[None, :]).mean()
    ties = (members[:, None] == non_members[None, :]).mean()
    auc = float(lower + 0.5 * ties)

    thresholds = np.unique(np.concatenate([members, non_members]))
    best = 0.5
    for threshold in thresholds:
        true_positive_rate = float((members <= threshold).mean())
        true_negative_rate = float((non_members > threshold).mean())
        best = max(best, 0.5 * (true_positive_rate + true_negative_rate))
    return {
        "auc": auc,
        "balanced_accuracy": best,
        "members": int(members.size),
        "non_members": int(non_members.size),
        "member_mean_loss": float(members.mean()),
        "non_member_mean_loss": float(non_members.mean()),
    }
