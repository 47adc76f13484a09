"""Tests of UnlearningTrainer on the small real modality dataset (chest X-ray, breast ultrasound, brain MRI)."""

from __future__ import annotations

import copy

import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.engines.utils import IterationEvents
from monai.transforms import Activationsd, AsDiscreted, Compose

from monai_unlearn.engines import UnlearningTrainer
from monai_unlearn.methods import BOUNDARY_PRESETS, BoundaryUnlearning, available_methods
from monai_unlearn.transforms import TagForgetd, split_datalist

FORGET_CLASS = 1
EPSILON = 0.1


def accuracy(network: torch.nn.Module, entries: list[dict], labels: set[int]) -> float:
    chosen = [e for e in entries if e["label"] in labels]
    images = torch.stack([e["image"] for e in chosen])
    targets = torch.tensor([e["label"] for e in chosen])
    network.eval()
    with torch.no_grad():
        return float((network(images).argmax(dim=1) == targets).float().mean())


def flag_loader(entries: list[dict], batch_size: int = 32, rule: str = f"label in {{{FORGET_CLASS}}}") -> DataLoader:
    dataset = Dataset([dict(e) for e in entries], transform=TagForgetd(rule))
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))


def make_trainer(network: torch.nn.Module, loader, max_epochs: int = 2, lr: float = 5e-4, **kwargs) -> UnlearningTrainer:
    kwargs.setdefault("method", "psg_retain")
    kwargs.setdefault("method_kwargs", {"epsilon": EPSILON, "box": (0.0, 1.0)})
    kwargs.setdefault("batchnorm", "eval")
    return UnlearningTrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=lr),
        **kwargs,
    )


@pytest.fixture()
def network(modality_classifier):
    torch.manual_seed(0)
    return copy.deepcopy(modality_classifier.network)


@pytest.fixture(autouse=True)
def _one_thread(single_torch_thread):
    yield


def test_flag_mode_forgets_class_and_keeps_retain(modality_classifier, network):
    train, test = modality_classifier.train, modality_classifier.test
    retain_before = accuracy(network, test, {0, 2})
    forget_before = accuracy(network, test, {FORGET_CLASS})
    assert forget_before > 0.8, f"the trained classifier should know the forget class first, got {forget_before:.3f}"

    make_trainer(network, flag_loader(train), max_epochs=4, lr=1e-3).run()

    forget_after = accuracy(network, test, {FORGET_CLASS})
    retain_after = accuracy(network, test, {0, 2})
    assert forget_after <= 0.2, f"forget-class test accuracy {forget_after:.3f} should drop to at most 0.2"
    assert retain_after >= retain_before - 0.05, (
        f"retain-class test accuracy fell from {retain_before:.3f} to {retain_after:.3f} (allowed: 0.05)"
    )


def test_paired_loaders_forget_class(modality_classifier, network):
    forget, retain = split_datalist(modality_classifier.train, f"label in {{{FORGET_CLASS}}}")
    forget_loader = DataLoader(Dataset(forget), batch_size=32, shuffle=True)
    retain_loader = DataLoader(Dataset(retain), batch_size=32, shuffle=True)
    trainer = make_trainer(network, forget_loader, max_epochs=4, lr=1e-3, retain_loader=retain_loader)
    assert trainer.pairing == "loaders", f"a retain_loader should select pairing='loaders', got {trainer.pairing!r}"

    trainer.run()

    forget_after = accuracy(network, modality_classifier.test, {FORGET_CLASS})
    assert forget_after <= 0.2, f"forget-class test accuracy {forget_after:.3f} should drop to at most 0.2"
    assert trainer.history[-1]["retain_samples"] > 0, "the retain loader should have been used by psg_retain"


class CountingIterable:
    """An iterable over a list of batches that counts how often it was iterated."""

    def __init__(self, loader):
        self.batches = list(loader)
        self.iterations = 0

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        self.iterations += 1
        return iter(self.batches)


def test_retain_loader_unused_when_retain_term_off(modality_classifier, network):
    forget, retain = split_datalist(modality_classifier.train, f"label in {{{FORGET_CLASS}}}")
    retain_batches = CountingIterable(DataLoader(Dataset(retain), batch_size=32))
    trainer = make_trainer(
        network,
        DataLoader(Dataset(forget), batch_size=32),
        max_epochs=1,
        method="psg",
        retain_loader=retain_batches,
    )
    trainer.run()
    assert retain_batches.iterations == 0, "with phi = 0 no retain batch may be loaded"
    assert trainer.history[-1]["retain_samples"] == 0, "no retain sample should be counted with phi = 0"


def test_original_network_stays_frozen(modality_classifier, network):
    original_state = modality_classifier.state()
    trainer = make_trainer(network, flag_loader(modality_classifier.train), max_epochs=1, lr=1e-3)
    trainer.run()
    frozen = trainer.original_network
    assert frozen is not None and frozen is not network, "the trainer must keep a separate frozen original"
    assert not any(p.requires_grad for p in frozen.parameters()), "the frozen original must not require gradients"
    assert all(p.grad is None for p in frozen.parameters()), "no gradient may be stored on the frozen original"
    for key, value in frozen.state_dict().items():
        assert torch.equal(value, original_state[key]), f"the frozen original changed at {key}"
    changed = any(not torch.equal(v, original_state[k]) for k, v in network.state_dict().items())
    assert changed, "the trainable network should have been revised"


def test_inner_iteration_events_fire_per_inner_step(modality_classifier, network):
    steps = 3
    trainer = make_trainer(
        network,
        flag_loader(modality_classifier.train),
        max_epochs=1,
        method="psg_multistep",
        method_kwargs={"epsilon": EPSILON, "box": (0.0, 1.0), "steps": steps, "early_stop": False},
    )
    counts = {"started": 0, "completed": 0, "iterations": 0}
    trainer.add_event_handler(IterationEvents.INNER_ITERATION_STARTED, lambda e: counts.__setitem__("started", counts["started"] + 1))
    trainer.add_event_handler(
        IterationEvents.INNER_ITERATION_COMPLETED, lambda e: counts.__setitem__("completed", counts["completed"] + 1)
    )

    def count_forget_iterations(engine):
        if engine.state.output and any(flag for flag in engine.state.batch and [b["forget"] for b in engine.state.batch]):
            counts["iterations"] += 1

    trainer.add_event_handler(Events.ITERATION_COMPLETED, count_forget_iterations)
    trainer.run()
    assert counts["iterations"] > 0, "some iteration should have had forget samples"
    assert counts["started"] == steps * counts["iterations"], (
        f"expected {steps} INNER_ITERATION_STARTED events per forget iteration ({counts['iterations']}), "
        f"got {counts['started']}"
    )
    assert counts["completed"] == counts["started"], "every started inner iteration should complete"


def test_batchnorm_eval_keeps_running_statistics(modality_classifier, network):
    before = {k: v.clone() for k, v in network.state_dict().items() if "running_mean" in k}
    make_trainer(network, flag_loader(modality_classifier.train), max_epochs=1, batchnorm="eval").run()
    for key, value in network.state_dict().items():
        if key in before:
            assert torch.equal(value, before[key]), f"batchnorm='eval' must not update {key}"


def test_batchnorm_train_updates_running_statistics(modality_classifier, network):
    before = {k: v.clone() for k, v in network.state_dict().items() if "running_mean" in k}
    make_trainer(network, flag_loader(modality_classifier.train), max_epochs=1, batchnorm="train").run()
    moved = [k for k, v in network.state_dict().items() if k in before and not torch.equal(v, before[k])]
    assert moved, "batchnorm='train' should update the running statistics"


def test_batchnorm_frozen_keeps_affine_parameters(modality_classifier, network):
    bn_names = [n for n, m in network.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    before = {k: v.clone() for k, v in network.state_dict().items() if any(k.startswith(n + ".") for n in bn_names)}
    make_trainer(network, flag_loader(modality_classifier.train), max_epochs=1, batchnorm="frozen", lr=1e-2).run()
    for key, value in network.state_dict().items():
        if key in before:
            assert torch.equal(value, before[key]), f"batchnorm='frozen' must not change {key}"


def test_state_dict_round_trip_restores_original(modality_classifier, network):
    trainer = make_trainer(network, flag_loader(modality_classifier.train), max_epochs=1, lr=1e-2)
    trainer.run()
    state = trainer.state_dict()
    assert "unlearning" in state, "the trainer's state_dict should carry the unlearning state"
    assert state["unlearning"]["original_network"] is not None, "the original's weights should be checkpointed"

    other_network = copy.deepcopy(network)
    resumed = make_trainer(other_network, flag_loader(modality_classifier.train), max_epochs=2, lr=1e-2)
    resumed.load_state_dict(state)
    resumed._ensure_ready()
    for key, value in resumed.original_network.state_dict().items():
        assert torch.equal(value, trainer.original_network.state_dict()[key]), f"restored original differs at {key}"
    assert torch.equal(resumed.generator.get_state(), trainer.generator.get_state()), "the noise generator state differs"
    assert resumed.history == trainer.history, "the pass history should be restored"


def test_same_seed_gives_identical_weights(modality_classifier):
    results = []
    for _ in range(2):
        network = copy.deepcopy(modality_classifier.network)
        make_trainer(network, flag_loader(modality_classifier.train), max_epochs=1, method="psg").run()
        results.append(network.state_dict())
    for key in results[0]:
        assert torch.equal(results[0][key], results[1][key]), f"two runs with the same seed differ at {key}"


@pytest.mark.parametrize("preset", sorted(BOUNDARY_PRESETS))
def test_every_preset_runs_one_pass(modality_classifier, network, preset):
    trainer = make_trainer(
        network, flag_loader(modality_classifier.train, batch_size=64), max_epochs=1, method=preset
    )
    trainer.run()
    summary = trainer.history[-1]
    assert summary["forget_samples"] > 0, f"preset {preset} saw no forget sample"
    assert 0.0 <= summary["flip_rate"] <= 1.0, f"preset {preset} reported flip rate {summary['flip_rate']}"
    assert torch.isfinite(torch.as_tensor(summary["forget_loss"])), f"preset {preset} gave a non-finite forget loss"


def test_outputs_feed_bundle_postprocessing(modality_classifier, network):
    from ignite.metrics import Accuracy
    from monai.handlers import from_engine

    postprocessing = Compose(
        [Activationsd(keys="pred", softmax=True), AsDiscreted(keys=["pred", "label"], argmax=[True, False], to_onehot=3)]
    )
    trainer = make_trainer(
        network,
        flag_loader(modality_classifier.train),
        max_epochs=1,
        postprocessing=postprocessing,
        key_train_metric={"train_accuracy": Accuracy(output_transform=from_engine(["pred", "label"]))},
    )
    trainer.run()
    assert "train_accuracy" in trainer.state.metrics, "the bundle's key metric should be computed on trainer outputs"


def test_batch_without_flag_raises(modality_classifier, network):
    loader = DataLoader(Dataset([dict(e) for e in modality_classifier.train]), batch_size=32)
    with pytest.raises(ValueError, match="no forget flag 'forget'.*TagForgetd"):
        make_trainer(network, loader, max_epochs=1).run()


def test_rule_matching_nothing_raises_after_first_pass(modality_classifier, network):
    with pytest.raises(ValueError, match="matched nothing"):
        make_trainer(network, flag_loader(modality_classifier.train, rule="label in {7}"), max_epochs=1).run()


def test_rule_matching_everything_raises(modality_classifier, network):
    with pytest.raises(ValueError, match="whole training set"):
        make_trainer(network, flag_loader(modality_classifier.train, rule="label >= 0"), max_epochs=1).run()


def test_nan_image_raises(modality_classifier, network):
    entries = [dict(e) for e in modality_classifier.train]
    entries[0]["image"] = entries[0]["image"].clone()
    entries[0]["image"][0, 0, 0] = float("nan")
    loader = DataLoader(Dataset(entries, transform=TagForgetd("label in {0, 1}")), batch_size=len(entries))
    with pytest.raises(ValueError, match="NaN or infinite"):
        make_trainer(network, loader, max_epochs=1).run()


def test_label_out_of_range_raises(modality_classifier, network):
    entries = [dict(e, label=5 if e["label"] == FORGET_CLASS else e["label"]) for e in modality_classifier.train]
    loader = DataLoader(Dataset(entries, transform=TagForgetd("label in {5}")), batch_size=len(entries))
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\]"):
        make_trainer(network, loader, max_epochs=1).run()


def test_empty_forget_loader_raises(network):
    loader = DataLoader(Dataset([]), batch_size=4)
    with pytest.raises(ValueError, match="forget loader is empty"):
        make_trainer(network, loader, max_epochs=1, retain_loader=[], method="psg").run()


def test_retain_term_without_retain_loader_raises(modality_classifier, network):
    forget, _ = split_datalist(modality_classifier.train, f"label in {{{FORGET_CLASS}}}")
    trainer = make_trainer(network, DataLoader(Dataset(forget), batch_size=32), max_epochs=1, pairing="loaders")
    with pytest.raises(ValueError, match="uses a retain term but pairing='loaders' got no retain_loader"):
        trainer.run()


def test_retain_loader_with_flag_pairing_raises(network):
    with pytest.raises(ValueError, match="retain_loader was given with pairing='flag'"):
        make_trainer(network, [], retain_loader=[], pairing="flag")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "no_such_method"}, "Unknown unlearning method 'no_such_method'"),
        ({"batchnorm": "sometimes"}, "Invalid batchnorm policy 'sometimes'"),
        ({"pairing": "zip"}, "Invalid pairing 'zip'"),
        ({"method_kwargs": {"box": (0.0, 1.0)}}, "needs epsilon"),
        ({"method_kwargs": {"epsilon": 0.1, "retain_weight": -1.0}}, "Invalid retain_weight: -1.0"),
        ({"method_kwargs": {"epsilon": 0.1, "retain_target": "teacher"}}, "Invalid retain_target 'teacher'"),
    ],
)
def test_invalid_arguments_raise(network, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(network, [], **kwargs)


def test_method_instance_and_registry_names():
    method = BoundaryUnlearning(preset="boundary_shrink", epsilon=0.05)
    assert method.search.step_size == pytest.approx(0.05), "boundary_shrink must step by exactly epsilon"
    assert method.search.noise_scale == 0.0, "boundary_shrink has no noise"
    for preset in BOUNDARY_PRESETS:
        assert preset in available_methods(), f"preset {preset} should be selectable by name"
