"""Evaluation metrics: the forget-split accuracy metric (single process and 2-process gloo), the headline metrics and
the oracle gap, relearn time, and the cost monitor.

Budget: about 15 s on one CPU thread, most of it the two gloo processes and the training of a classifier that never
saw the forget class.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator

from conftest import train_modality_network
from monai_unlearn.metrics import (
    CostMonitor,
    ForgetSplitAccuracy,
    compare_models,
    evaluate_classifier,
    headline_metrics,
    oracle_gap,
    relearn_time,
)
from monai_unlearn.transforms import TagForgetd

FORGET_CLASS = 1
RULE = f"label in {{{FORGET_CLASS}}}"
CLASS_NAMES = ["chest_xray", "breast_ultrasound", "brain_mri"]


@pytest.fixture(autouse=True)
def _one_thread(single_torch_thread):
    yield


def pred_and_label(output: dict) -> tuple:
    return output["pred"], output["label"]


def tagged_loader(entries: list[dict], batch_size: int = 32) -> DataLoader:
    return DataLoader(Dataset([dict(e) for e in entries], transform=TagForgetd(RULE)), batch_size=batch_size)


@pytest.fixture(scope="module")
def network_without_forget_class(modality_classifier) -> torch.nn.Module:
    """The modality DenseNet trained like the fixture's but on the retain classes only: a small retrain oracle."""
    retain = [e for e in modality_classifier.train if e["label"] != FORGET_CLASS]
    return train_modality_network(retain, seed=0)


# ------------------------------------------------------------------------------------------ ForgetSplitAccuracy
def test_split_accuracy_matches_evaluate_classifier(modality_classifier):
    loader = tagged_loader(modality_classifier.test)
    metric = ForgetSplitAccuracy(num_classes=3, class_names=CLASS_NAMES, output_transform=pred_and_label)
    evaluator = SupervisedEvaluator(
        device="cpu", val_data_loader=loader, network=modality_classifier.network, decollate=False
    )
    metric.attach(evaluator, "split_accuracy")
    evaluator.run()

    computed = evaluator.state.metrics["split_accuracy"]
    expected = evaluate_classifier(modality_classifier.network, loader, "cpu", class_names=CLASS_NAMES).summary
    for key in ("accuracy", "forget_accuracy", "retain_accuracy", "forget_samples", "retain_samples"):
        assert computed[key] == pytest.approx(expected[key]), f"{key}: metric {computed[key]}, expected {expected[key]}"
    assert computed["per_class_accuracy"] == pytest.approx(expected["per_class_accuracy"]), "per-class values differ"
    assert evaluator.state.metrics["forget_accuracy"] == computed["forget_accuracy"], "values should be spread too"


def test_split_accuracy_reads_flags_of_decollated_batch(modality_classifier):
    from monai.handlers import from_engine

    loader = tagged_loader(modality_classifier.test)
    metric = ForgetSplitAccuracy(num_classes=3, output_transform=from_engine(["pred", "label"]))
    evaluator = SupervisedEvaluator(device="cpu", val_data_loader=loader, network=modality_classifier.network)
    metric.attach(evaluator, "split_accuracy")
    evaluator.run()
    counts = evaluator.state.metrics["split_accuracy"]
    forget = sum(e["label"] == FORGET_CLASS for e in modality_classifier.test)
    assert counts["forget_samples"] == forget, f"expected {forget} forget samples from the batch flags, got {counts}"


def test_split_accuracy_without_flags_raises(modality_classifier):
    loader = DataLoader(Dataset([dict(e) for e in modality_classifier.test]), batch_size=32)
    metric = ForgetSplitAccuracy(num_classes=3, output_transform=pred_and_label)
    evaluator = SupervisedEvaluator(
        device="cpu", val_data_loader=loader, network=modality_classifier.network, decollate=False
    )
    metric.attach(evaluator, "split_accuracy")
    with pytest.raises(ValueError, match="no forget flag 'forget'.*TagForgetd"):
        evaluator.run()


def test_split_accuracy_rejects_bad_flags():
    metric = ForgetSplitAccuracy(num_classes=2)
    with pytest.raises(ValueError, match=r"Forget flags must be 0 or 1, got values \[0, 2\]"):
        metric.update((torch.eye(2), torch.tensor([0, 1]), torch.tensor([0, 2])))
    with pytest.raises(ValueError, match="2 predictions, 2 labels and 3 forget flags"):
        metric.update((torch.eye(2), torch.tensor([0, 1]), torch.tensor([0, 1, 1])))


def split_accuracy_worker(rank: int, shards: list, output_dir: str) -> None:
    """Update the metric with this rank's shard under a 2-process gloo group and write what compute() returns."""
    metric = ForgetSplitAccuracy(num_classes=3)
    for y_pred, y, flags in shards[rank]:
        metric.update((torch.tensor(y_pred), torch.tensor(y), torch.tensor(flags)))
    result = metric.compute()
    Path(output_dir, f"rank{rank}.json").write_text(json.dumps(result))


def test_split_accuracy_reduces_over_two_gloo_processes(tmp_path):
    import ignite.distributed as idist

    rng = np.random.default_rng(0)
    batches = []
    for size in (7, 5, 9, 4):
        logits = rng.normal(size=(size, 3)).tolist()
        batches.append((logits, rng.integers(0, 3, size).tolist(), rng.integers(0, 2, size).tolist()))
    single = ForgetSplitAccuracy(num_classes=3)
    for y_pred, y, flags in batches:
        single.update((torch.tensor(y_pred), torch.tensor(y), torch.tensor(flags)))
    expected = single.compute()

    shards = [batches[0::2], batches[1::2]]
    idist.spawn("gloo", split_accuracy_worker, args=(shards, str(tmp_path)), nproc_per_node=2)

    for rank in range(2):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for key in ("accuracy", "forget_accuracy", "retain_accuracy", "forget_samples", "retain_samples"):
            assert result[key] == pytest.approx(expected[key]), f"rank {rank} {key}: {result[key]} != {expected[key]}"
        assert result["per_class_accuracy"] == pytest.approx(expected["per_class_accuracy"]), f"rank {rank} per class"


# ------------------------------------------------------------------------------------------ headline and gap
def test_headline_metrics_name_the_splits():
    summaries = {
        "train": {"accuracy": 0.9, "forget_accuracy": 0.2, "retain_accuracy": 0.95},
        "test": {"accuracy": 0.8, "forget_accuracy": 0.1, "retain_accuracy": 0.85},
    }
    assert headline_metrics(summaries) == {
        "forget_train_accuracy": 0.2,
        "forget_heldout_accuracy": 0.1,
        "retain_accuracy": 0.95,
        "test_accuracy": 0.8,
        "test_retain_accuracy": 0.85,
    }


def test_oracle_gap_per_metric_and_mean():
    revised = {"forget_train_accuracy": 0.1, "retain_accuracy": 0.9, "mia_efficacy": 0.8, "test_accuracy": None}
    oracle = {"forget_train_accuracy": 0.0, "retain_accuracy": 0.95, "mia_efficacy": 1.0, "test_accuracy": 0.9}
    chosen = ["forget_train_accuracy", "retain_accuracy", "mia_efficacy", "test_accuracy"]
    gap = oracle_gap(revised, oracle, metrics=chosen)
    expected = {"forget_train_accuracy": 0.1, "retain_accuracy": 0.05, "mia_efficacy": 0.2}
    assert gap["per_metric"] == pytest.approx(expected), f"per-metric gaps: {gap['per_metric']}"
    assert gap["mean"] == pytest.approx((0.1 + 0.05 + 0.2) / 3), "a metric one side lacks must stay out of the mean"
    assert gap["metrics"] == ["forget_train_accuracy", "retain_accuracy", "mia_efficacy"]


def test_compare_models_without_oracle_has_no_gap():
    comparison = compare_models({"original": {"a": 1.0}, "revised": {"a": 0.5}})
    assert comparison["metrics"] == {"a": {"original": 1.0, "revised": 0.5}}
    assert comparison["gap"] == {}, "no gap can be computed without an oracle"
    assert comparison["reference"] is None, "the reference must be None when the oracle is missing"


def test_classifier_evaluation_gives_attack_features(modality_classifier):
    evaluation = evaluate_classifier(modality_classifier.network, tagged_loader(modality_classifier.test), "cpu")
    probabilities = torch.softmax(torch.from_numpy(evaluation.logits), dim=1).numpy()
    expected_confidence = probabilities[np.arange(len(probabilities)), evaluation.labels]
    assert np.allclose(evaluation.confidences, expected_confidence, atol=1e-6), "confidence must be p(true label)"
    expected_entropy = -(probabilities * np.log(probabilities)).sum(axis=1)
    assert np.allclose(evaluation.entropies, expected_entropy, atol=1e-5), "entropy must be -sum p log p"
    assert np.allclose(np.exp(-evaluation.losses), expected_confidence, atol=1e-5), "loss must be -log p(true label)"


# ------------------------------------------------------------------------------------------ relearn time
def test_relearn_faster_for_hidden_class_than_for_oracle(modality_classifier, network_without_forget_class):
    loader = tagged_loader(modality_classifier.train, batch_size=64)
    target = evaluate_classifier(modality_classifier.network, loader, "cpu").summary["forget_accuracy"]
    hidden = copy.deepcopy(modality_classifier.network)
    with torch.no_grad():
        hidden.class_layers.out.bias[FORGET_CLASS] -= 20.0  # the class is only suppressed, its features are intact
    assert evaluate_classifier(hidden, loader, "cpu").summary["forget_accuracy"] < 0.05, "the class should be hidden"

    hidden_result = relearn_time(hidden, loader, target, max_steps=60, tolerance=0.05)
    oracle_result = relearn_time(network_without_forget_class, loader, target, max_steps=60, tolerance=0.05)

    assert hidden_result.reached, f"the suppressed class should come back within 60 steps: {hidden_result.curve}"
    oracle_steps = oracle_result.steps if oracle_result.reached else oracle_result.max_steps + 1
    assert hidden_result.steps < oracle_steps, (
        f"a suppressed class relearned in {hidden_result.steps} steps, the oracle in {oracle_result.steps}; the oracle "
        "never saw the class and should need more"
    )
    assert hidden_result.curve[0] == [0, pytest.approx(hidden_result.start_value)], "the curve starts at step 0"


def test_relearn_leaves_network_unchanged(modality_classifier):
    network = copy.deepcopy(modality_classifier.network)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    relearn_time(network, tagged_loader(modality_classifier.train), target=1.0, max_steps=3)
    for key, value in network.state_dict().items():
        assert torch.equal(value, before[key]), f"relearn_time changed the measured network at {key}"


def test_relearn_without_forget_samples_raises(modality_classifier):
    entries = [dict(e) for e in modality_classifier.train]
    loader = DataLoader(Dataset(entries, transform=TagForgetd("label in {9}")), batch_size=32)
    with pytest.raises(ValueError, match="no forget sample"):
        relearn_time(modality_classifier.network, loader, target=0.9)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizer": "lbfgs"}, "Invalid relearn optimizer 'lbfgs'"),
        ({"max_steps": 0}, "max_steps must be a positive integer"),
        ({"target": 1.5}, "target must be in"),
        ({"batchnorm": "frozen"}, "Invalid batchnorm mode 'frozen'"),
    ],
)
def test_relearn_rejects_invalid_settings(modality_classifier, kwargs, message):
    arguments = {"target": 0.9, **kwargs}
    with pytest.raises(ValueError, match=message):
        relearn_time(modality_classifier.network, [], **arguments)


# ------------------------------------------------------------------------------------------ cost
def test_cost_monitor_sees_peak_inside_window():
    with CostMonitor("cpu") as monitor:
        block = np.ones(40 * 2**20 // 8)  # 40 MiB, touched
        block += 1.0
        del block
    cost = monitor.cost
    assert cost is not None and cost.wall_seconds > 0, f"the wall time should be measured: {cost}"
    assert cost.peak_rss_bytes is not None and cost.peak_rss_bytes > 40 * 2**20, f"peak RSS missed the block: {cost}"
    assert cost.peak_cuda_bytes is None, f"a CPU window has no CUDA peak: {cost}"
    assert cost.peak_memory_bytes == cost.peak_rss_bytes, "the peak memory of a CPU run is its RSS"


def test_cost_monitor_window_excludes_earlier_peak():
    with CostMonitor("cpu") as with_block:
        block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
        block += 1.0
        del block
    with CostMonitor("cpu") as without_block:
        small = np.ones(1024)
        small += 1.0
    if without_block.cost.rss_scope != "window":
        pytest.skip("this system cannot reset the RSS high-water mark")
    difference = with_block.cost.peak_rss_bytes - without_block.cost.peak_rss_bytes
    assert difference > 150 * 2**20, (
        f"the window with a 200 MiB block peaked only {difference} bytes above the later window without it; the "
        "later window should not see the earlier peak"
    )
