# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Membership inference attacks (MIAs) that test whether a model still behaves as if it had trained on the forget set.

They sit after the evaluation in the flow (transform -> engine -> inner search -> loss -> handlers): the metrics handler
collects per-sample outputs of a network on a training loader and a held-out loader, both tagged with the forget flag,
and these functions turn them into attack scores. Each attack separates *members* (samples the model trained on) from
*non-members* (samples it never saw) using one per-sample feature:

- the **loss attacks** (:func:`loss_threshold_attack`, :func:`loss_logistic_attack`) use the per-sample loss. Their
  members are the forget set's training samples and their non-members held-out samples *of the same class or group*,
  so the attack measures memorisation of the forgotten samples, not the difference between the forgotten class and
  the others;
- the **SVC attacks** (:func:`svc_attack` with ``feature="confidence"`` or ``"entropy"``) learn what a member looks like
  from the retain set (members) and the test set (non-members), then classify the forget set; the share of forget
  samples classified as non-members is the *MIA-efficacy* that SalUn (Fan et al., ICLR 2024) and l1-sparse (Jia et al.,
  NeurIPS 2023) report.

For every attack a value near the retrain oracle's is the target, not 0 or 0.5: an oracle that generalises well to
the forgotten class scores like a model that never saw it, which is the point of the comparison.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "ATTACKS",
    "AttackResult",
    "attack_features",
    "prediction_confidence",
    "prediction_entropy",
    "null_auc_std",
    "loss_threshold_attack",
    "loss_logistic_attack",
    "svc_attack",
    "class_matched_indices",
    "run_attacks",
    "attack_summary",
]

#: Names of the attacks :func:`run_attacks` computes, in report order.
ATTACKS = ("loss_threshold", "loss_logistic", "confidence_svc", "entropy_svc")

#: Settings of the SVC attack of SalUn and l1-sparse: an RBF-kernel SVC with C = 3 and gamma = 1 / n_features.
SVC_C = 3.0
SVC_GAMMA = "auto"


@dataclass
class AttackResult:
    """Outcome of one membership inference attack.

    Attributes:
        attack: the attack's name (one of :data:`ATTACKS`).
        members: number of member samples the attack was scored on.
        non_members: number of non-member samples the attack was scored on.
        auc: area under the ROC curve of the attack's membership score, members against non-members (0.5 is chance;
            below 0.5 means members look *less* like members than non-members do).
        balanced_accuracy: mean of the true-positive and true-negative rates of the attack's member/non-member
            decisions (0.5 is chance), measured on samples the attack was not fitted on.
        mia_efficacy: SVC attacks only: share of forget samples classified as non-members.
        details: the attack's settings and sizes (folds, threshold, features, sample counts).
        skipped: why the attack was not computed (for example an empty member set), or None.
    """

    attack: str
    members: int = 0
    non_members: int = 0
    auc: float | None = None
    balanced_accuracy: float | None = None
    mia_efficacy: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON-ready values."""
        return asdict(self)


# --------------------------------------------------------------------------------------------------- features
def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def prediction_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return the softmax probability of each sample's true label, ``p_y(x)``, from ``(N, C)`` logits."""
    probabilities = _softmax(logits)
    return probabilities[np.arange(len(probabilities)), np.asarray(labels, dtype=np.int64)]


def prediction_entropy(logits: np.ndarray) -> np.ndarray:
    """Return the Shannon entropy ``-sum_c p_c log p_c`` (in nats) of each sample's softmax prediction."""
    probabilities = _softmax(logits)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probabilities > 0, probabilities * np.log(probabilities), 0.0)
    return -terms.sum(axis=1)


def attack_features(evaluation: Any) -> dict[str, np.ndarray]:
    """Return the per-sample attack features that an evaluation object provides.

    Every evaluation gives ``loss`` (its ``losses`` attribute). ``confidence`` and ``entropy`` come from its
    ``confidences`` and ``entropies`` attributes when it has them (a
    :class:`~monai_unlearn.metrics.ClassifierEvaluation` computes both from its logits; a segmentation evaluation may
    give per-case means of the voxel values). Attacks whose feature is missing are reported as skipped.
    """
    features = {"loss": np.asarray(evaluation.losses, dtype=np.float64).reshape(-1)}
    for name, attribute in (("confidence", "confidences"), ("entropy", "entropies")):
        values = getattr(evaluation, attribute, None)
        if values is not None:
            features[name] = np.asarray(values, dtype=np.float64).reshape(-1)
    return features


# --------------------------------------------------------------------------------------------------- helpers
def null_auc_std(members: int, non_members: int) -> float | None:
    """Return the standard deviation of the AUC of a score that does not depend on membership.

    Under that null hypothesis the AUC is the Mann-Whitney U statistic divided by ``n1 * n2``, whose standard
    deviation is ``sqrt((n1 + n2 + 1) / (12 * n1 * n2))`` (without ties). An attack's AUC within about two of these of
    0.5 is indistinguishable from chance at this sample size.
    """
    if members < 1 or non_members < 1:
        return None
    return math.sqrt((members + non_members + 1) / (12.0 * members * non_members))


def _membership_data(members: np.ndarray, non_members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = np.concatenate([np.asarray(members, dtype=np.float64), np.asarray(non_members, dtype=np.float64)])
    is_member = np.concatenate([np.ones(len(members), dtype=np.int64), np.zeros(len(non_members), dtype=np.int64)])
    return values, is_member


def _check_sets(attack: str, members: np.ndarray, non_members: np.ndarray, minimum: int) -> AttackResult | None:
    """Return a skipped result when a set is too small, else None."""
    for side, values in (("members", members), ("non-members", non_members)):
        if len(values) < minimum:
            return AttackResult(
                attack=attack,
                members=len(members),
                non_members=len(non_members),
                skipped=f"{len(values)} {side}; the attack needs at least {minimum}",
            )
        if not np.all(np.isfinite(values)):
            raise ValueError(f"The {side} of the {attack} attack have non-finite feature values; check the network.")
    return None


def _fold_count(is_member: np.ndarray, folds: int) -> int:
    smallest = int(min((is_member == 1).sum(), (is_member == 0).sum()))
    return max(2, min(folds, smallest))


def _balanced_accuracy(is_member: np.ndarray, predicted_member: np.ndarray) -> float:
    true_positive_rate = float(predicted_member[is_member == 1].mean())
    true_negative_rate = float(1.0 - predicted_member[is_member == 0].mean())
    return 0.5 * (true_positive_rate + true_negative_rate)


def _best_threshold(score: np.ndarray, is_member: np.ndarray) -> float:
    """Return the threshold on ``score`` (member when ``score >= threshold``) with the best balanced accuracy."""
    from sklearn.metrics import roc_curve

    false_positive_rate, true_positive_rate, thresholds = roc_curve(is_member, score)
    balanced = 0.5 * (true_positive_rate + 1.0 - false_positive_rate)
    return float(thresholds[int(np.argmax(balanced))])


# --------------------------------------------------------------------------------------------------- loss attacks
def loss_threshold_attack(
    member_losses: np.ndarray, non_member_losses: np.ndarray, folds: int = 5, seed: int = 0
) -> AttackResult:
    """Loss-threshold attack: a sample is called a member when its loss is at most a threshold.

    Definition (Yeom et al., "Privacy Risk in Machine Learning: Analyzing the Connection to Overfitting", IEEE CSF
    2018): the membership score of a sample is its negative per-sample loss ``-l(f(x), y)``.

    - ``auc`` is the ROC AUC of that score, members against non-members. It involves no fitting.
    - ``balanced_accuracy`` is measured out of fold. The samples are split into ``folds`` stratified folds (fewer when
      a class has fewer samples). Each fold gets the threshold with the best balanced accuracy on the other folds, and
      the balanced accuracies of the folds are averaged.
    - ``details["threshold"]`` is the best threshold fitted on all samples (for reading, not for scoring).

    Args:
        member_losses: per-sample losses of the members (the forget set's training samples).
        non_member_losses: per-sample losses of the non-members (held-out samples of the same class or group).
        folds: number of cross-validation folds (at least 2).
        seed: seed of the fold assignment.

    Returns:
        The :class:`AttackResult`; skipped when a set has fewer than 2 samples.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    members, non_members = np.asarray(member_losses).reshape(-1), np.asarray(non_member_losses).reshape(-1)
    skipped = _check_sets("loss_threshold", members, non_members, minimum=2)
    if skipped is not None:
        return skipped
    losses, is_member = _membership_data(members, non_members)
    score = -losses
    auc = float(roc_auc_score(is_member, score))

    n_folds = _fold_count(is_member, folds)
    balanced = []
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fit_index, test_index in splitter.split(score.reshape(-1, 1), is_member):
        threshold = _best_threshold(score[fit_index], is_member[fit_index])
        predicted = (score[test_index] >= threshold).astype(np.int64)
        balanced.append(_balanced_accuracy(is_member[test_index], predicted))
    return AttackResult(
        attack="loss_threshold",
        members=len(members),
        non_members=len(non_members),
        auc=auc,
        balanced_accuracy=float(np.mean(balanced)),
        details={
            "feature": "per-sample loss",
            "folds": n_folds,
            "threshold": -_best_threshold(score, is_member),
            "auc_std_under_null": null_auc_std(len(members), len(non_members)),
        },
    )


def _logistic_cross_validation(
    features: np.ndarray, is_member: np.ndarray, n_folds: int, seed: int
) -> tuple[float, float]:
    """Return the fold-mean AUC and balanced accuracy of a logistic regression scored out of fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    aucs, balanced = [], []
    for fit_index, test_index in splitter.split(features, is_member):
        model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced"))
        model.fit(features[fit_index], is_member[fit_index])
        probability = model.predict_proba(features[test_index])[:, 1]
        aucs.append(roc_auc_score(is_member[test_index], probability))
        balanced.append(_balanced_accuracy(is_member[test_index], (probability >= 0.5).astype(np.int64)))
    return float(np.mean(aucs)), float(np.mean(balanced))


def loss_logistic_attack(
    member_losses: np.ndarray,
    non_member_losses: np.ndarray,
    folds: int = 5,
    seed: int = 0,
) -> AttackResult:
    """Logistic-regression attack on the per-sample loss, scored by stratified cross-validation.

    Definition: a logistic regression with balanced class weights is fitted on the standardised per-sample loss,
    members labelled 1 and non-members 0 (the attack with which Kurmanji et al., "Towards Unbounded Machine
    Unlearning" (SCRUB), NeurIPS 2023, evaluate unlearning). The samples are split into ``folds`` stratified folds.
    For each fold, a model fitted on the other folds predicts the membership probability of the fold's samples.
    ``auc`` is the mean over folds of the ROC AUC of these probabilities, and ``balanced_accuracy`` the mean over
    folds of the balanced accuracy of their decisions at 0.5.

    Each fold's AUC rests on a fifth of the samples, so with few samples this AUC scatters more around 0.5 than the
    threshold attack's AUC, whose chance spread is ``details["auc_std_under_null"]``.

    Args:
        member_losses: per-sample losses of the members (the forget set's training samples).
        non_member_losses: per-sample losses of the non-members (held-out samples of the same class or group).
        folds: number of cross-validation folds (at least 2; fewer when a class has fewer samples).
        seed: seed of the fold assignment.

    Returns:
        The :class:`AttackResult`; skipped when a set has fewer than 2 samples.
    """
    members, non_members = np.asarray(member_losses).reshape(-1), np.asarray(non_member_losses).reshape(-1)
    skipped = _check_sets("loss_logistic", members, non_members, minimum=2)
    if skipped is not None:
        return skipped
    losses, is_member = _membership_data(members, non_members)
    features = losses.reshape(-1, 1)
    n_folds = _fold_count(is_member, folds)
    auc, balanced = _logistic_cross_validation(features, is_member, n_folds, seed)
    details: dict[str, Any] = {
        "feature": "per-sample loss (standardised)",
        "model": "LogisticRegression(class_weight='balanced')",
        "folds": n_folds,
        "auc_std_under_null": null_auc_std(len(members), len(non_members)),
    }
    return AttackResult(
        attack="loss_logistic",
        members=len(members),
        non_members=len(non_members),
        auc=auc,
        balanced_accuracy=balanced,
        details=details,
    )


# --------------------------------------------------------------------------------------------------- SVC attacks
def _subsample(values: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    if len(values) <= count:
        return values
    return values[np.sort(rng.choice(len(values), size=count, replace=False))]


def svc_attack(
    shadow_members: np.ndarray,
    shadow_non_members: np.ndarray,
    forget: np.ndarray,
    target_non_members: np.ndarray | None = None,
    feature: str = "confidence",
    max_samples_per_side: int | None = 2500,
    seed: int = 0,
) -> AttackResult:
    """SVC attack on one per-sample feature: the "MIA-efficacy" of SalUn and l1-sparse.

    Sources: Fan et al., "SalUn", ICLR 2024, and Jia et al., "Model Sparsity Can Simplify Machine Unlearning",
    NeurIPS 2023, after the metric-based attacks of Song and Mittal, USENIX Security 2021. Definition: a support
    vector classifier with an RBF kernel, ``C = 3`` and ``gamma = "auto"`` (1 / number of features, here 1) is fitted
    on one scalar feature of the model's softmax output, without scaling. Its members (label 1) are retain-set
    training samples and its non-members (label 0) test samples. The larger shadow side is first subsampled (seeded)
    to the size of the smaller one, as those papers take as many retain samples as there are test samples. The
    fitted classifier is applied to the forget set's training samples, and

        ``mia_efficacy`` = share of forget samples classified as non-members.

    A high MIA-efficacy means that the forget set looks unseen. The features, as in those papers' evaluation:

    - ``"confidence"``: the softmax probability of the true label, ``p_y(x)``. This is the entry SalUn and l1-sparse
      report as MIA-efficacy;
    - ``"entropy"``: the Shannon entropy of the softmax output, ``-sum_c p_c log p_c`` (label-free).

    When ``target_non_members`` is given (held-out samples of the forget set's class or group), ``auc`` is the ROC AUC
    of the classifier's decision function on the forget samples (members) against them, and ``balanced_accuracy``
    the balanced accuracy of its decisions on the two sets: the same question as the loss attacks, asked with this
    classifier.

    Args:
        shadow_members: feature values of retain-set training samples.
        shadow_non_members: feature values of test samples.
        forget: feature values of the forget set's training samples.
        target_non_members: feature values of held-out samples of the forget class or group, or None.
        feature: name of the feature, recorded in the result and used as the attack's name (``"<feature>_svc"``).
        max_samples_per_side: at most this many shadow samples per side (seeded subsample), because fitting an SVC
            takes quadratic time in the sample count; None keeps all.
        seed: seed of the subsampling.

    Returns:
        The :class:`AttackResult`; skipped when a shadow side has fewer than 2 samples or the forget set is empty.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.svm import SVC

    attack = f"{feature}_svc"
    shadow_in = np.asarray(shadow_members, dtype=np.float64).reshape(-1)
    shadow_out = np.asarray(shadow_non_members, dtype=np.float64).reshape(-1)
    forget = np.asarray(forget, dtype=np.float64).reshape(-1)
    skipped = _check_sets(attack, shadow_in, shadow_out, minimum=2)
    if skipped is not None:
        return skipped
    if len(forget) == 0:
        return AttackResult(attack=attack, skipped="the forget set is empty")

    rng = np.random.default_rng(seed)
    per_side = min(len(shadow_in), len(shadow_out))
    if max_samples_per_side is not None:
        per_side = min(per_side, int(max_samples_per_side))
    shadow_in, shadow_out = _subsample(shadow_in, per_side, rng), _subsample(shadow_out, per_side, rng)
    values, is_member = _membership_data(shadow_in, shadow_out)
    classifier = SVC(C=SVC_C, kernel="rbf", gamma=SVC_GAMMA)
    classifier.fit(values.reshape(-1, 1), is_member)

    forget_member = classifier.predict(forget.reshape(-1, 1))
    result = AttackResult(
        attack=attack,
        members=len(forget),
        non_members=0,
        mia_efficacy=float(1.0 - forget_member.mean()),
        details={
            "feature": feature,
            "model": f"SVC(C={SVC_C}, kernel='rbf', gamma='{SVC_GAMMA}')",
            "shadow_members": len(shadow_in),
            "shadow_non_members": len(shadow_out),
        },
    )
    if target_non_members is not None and len(target_non_members) > 0:
        target_out = np.asarray(target_non_members, dtype=np.float64).reshape(-1)
        target_values, target_is_member = _membership_data(forget, target_out)
        decision = classifier.decision_function(target_values.reshape(-1, 1))
        result.non_members = len(target_out)
        result.auc = float(roc_auc_score(target_is_member, decision))
        predicted = classifier.predict(target_values.reshape(-1, 1)).astype(np.int64)
        result.balanced_accuracy = _balanced_accuracy(target_is_member, predicted)
        result.details["auc_std_under_null"] = null_auc_std(len(forget), len(target_out))
    return result


# --------------------------------------------------------------------------------------------------- all attacks
def class_matched_indices(
    member_labels: np.ndarray, candidate_labels: np.ndarray, seed: int = 0
) -> np.ndarray:
    """Return indices of candidates drawn to match the class proportions of the members, as many as possible.

    For each class ``c`` of the members, ``floor(n_c * r)`` candidates of class ``c`` are drawn without replacement,
    where ``n_c`` is the member count of ``c`` and ``r`` the largest ratio that every class's candidates can supply.
    Member classes that no candidate has are left out.
    """
    member_labels = np.asarray(member_labels).reshape(-1)
    candidate_labels = np.asarray(candidate_labels).reshape(-1)
    classes, member_counts = np.unique(member_labels, return_counts=True)
    available = np.array([(candidate_labels == c).sum() for c in classes])
    usable = available > 0
    if not usable.any():
        return np.zeros(0, dtype=np.int64)
    ratio = float(np.min(available[usable] / member_counts[usable]))
    rng = np.random.default_rng(seed)
    chosen = []
    for c, count, supply in zip(classes[usable], member_counts[usable], available[usable]):
        take = min(int(supply), int(math.floor(count * ratio)))
        pool = np.flatnonzero(candidate_labels == c)
        chosen.append(rng.choice(pool, size=take, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def _sample_labels(evaluation: Any) -> np.ndarray | None:
    labels = getattr(evaluation, "labels", None)
    if labels is None:
        return None
    labels = np.asarray(labels)
    return labels if labels.ndim == 1 and len(labels) == len(np.asarray(evaluation.losses).reshape(-1)) else None


def run_attacks(
    train_evaluation: Any,
    heldout_evaluation: Any,
    attacks: Sequence[str] = ATTACKS,
    folds: int = 5,
    seed: int = 0,
    svc_non_members: str = "all",
    max_samples_per_side: int | None = 2500,
) -> dict[str, AttackResult]:
    """Run membership inference attacks on a model's outputs on a training split and a held-out split.

    Both evaluations carry per-sample ``losses`` and forget ``flags`` (and, for the SVC attacks, ``confidences`` and
    ``entropies``). The sets are:

    - members: the training split's forget samples (flag 1);
    - non-members of the loss attacks and of the SVC attacks' AUC: the held-out split's forget samples (same class
      or group). When the held-out split has none (for example when the rule names training cases only), held-out
      samples are drawn to match the members' class proportions (:func:`class_matched_indices`), and
      ``details["non_member_set"]`` records it;
    - shadow members of the SVC attacks: the training split's retain samples (flag 0);
    - shadow non-members of the SVC attacks: all held-out samples (``svc_non_members="all"``, as SalUn and l1-sparse
      use the whole test set) or only the held-out retain samples (``"retain"``).

    Args:
        train_evaluation: evaluation of the network on the training split.
        heldout_evaluation: evaluation of the network on the held-out split.
        attacks: names from :data:`ATTACKS`.
        folds: cross-validation folds of the loss attacks.
        seed: seed of folds and subsampling.
        svc_non_members: ``"all"`` or ``"retain"``, see above.
        max_samples_per_side: cap on the SVC attacks' shadow samples per side.

    Returns:
        The results by attack name, in the order of ``attacks``.

    Raises:
        ValueError: for an unknown attack name or ``svc_non_members`` value.
    """
    unknown = [name for name in attacks if name not in ATTACKS]
    if unknown:
        raise ValueError(f"Unknown membership inference attacks {unknown}: expected names from {list(ATTACKS)}.")
    if svc_non_members not in ("all", "retain"):
        raise ValueError(f"Invalid svc_non_members {svc_non_members!r}: expected 'all' or 'retain'.")

    train_features, heldout_features = attack_features(train_evaluation), attack_features(heldout_evaluation)
    train_forget = np.asarray(train_evaluation.flags).reshape(-1) == 1
    heldout_forget = np.asarray(heldout_evaluation.flags).reshape(-1) == 1

    non_member_index = np.flatnonzero(heldout_forget)
    non_member_set = "held-out forget samples"
    if len(non_member_index) == 0:
        member_labels, heldout_labels = _sample_labels(train_evaluation), _sample_labels(heldout_evaluation)
        if member_labels is not None and heldout_labels is not None:
            non_member_index = class_matched_indices(member_labels[train_forget], heldout_labels, seed=seed)
            non_member_set = "held-out samples matched to the forget set's classes"
        else:
            non_member_index = np.arange(len(heldout_forget))
            non_member_set = "all held-out samples"
    shadow_out_mask = np.ones_like(heldout_forget) if svc_non_members == "all" else ~heldout_forget

    results: dict[str, AttackResult] = {}
    for name in attacks:
        if name in ("loss_threshold", "loss_logistic"):
            function = loss_threshold_attack if name == "loss_threshold" else loss_logistic_attack
            result = function(
                train_features["loss"][train_forget], heldout_features["loss"][non_member_index], folds=folds, seed=seed
            )
        else:
            feature = name[: -len("_svc")]
            if feature not in train_features or feature not in heldout_features:
                results[name] = AttackResult(attack=name, skipped=f"the evaluation gives no per-sample {feature}")
                continue
            result = svc_attack(
                shadow_members=train_features[feature][~train_forget],
                shadow_non_members=heldout_features[feature][shadow_out_mask],
                forget=train_features[feature][train_forget],
                target_non_members=heldout_features[feature][non_member_index],
                feature=feature,
                max_samples_per_side=max_samples_per_side,
                seed=seed,
            )
        result.details["non_member_set"] = non_member_set
        results[name] = result
    return results


def attack_summary(results: Mapping[str, AttackResult | Mapping[str, Any]]) -> dict[str, float | None]:
    """Return the headline numbers of attack results as flat ``mia_*`` keys, for tables and oracle gaps.

    Keys: ``mia_<attack>_auc`` and ``mia_<attack>_balanced_accuracy`` for every attack, plus ``mia_efficacy`` (the
    confidence SVC attack's, the number SalUn and l1-sparse report) and ``mia_entropy_efficacy``.
    """
    summary: dict[str, float | None] = {}
    for name, result in results.items():
        values = result.to_dict() if isinstance(result, AttackResult) else dict(result)
        summary[f"mia_{name}_auc"] = values.get("auc")
        summary[f"mia_{name}_balanced_accuracy"] = values.get("balanced_accuracy")
        if name == "confidence_svc":
            summary["mia_efficacy"] = values.get("mia_efficacy")
        elif name == "entropy_svc":
            summary["mia_entropy_efficacy"] = values.get("mia_efficacy")
    return summary
