"""Tests that the unlearning trainer does no wasted work, and of its performance options (channels-last, compile).

They count the forward passes of the frozen and the trainable networks with forward hooks. They check that no
parameter gradient reaches the frozen network and that no retain batch is loaded or built without a retain term.
They also check that the options change the memory layout or the compilation but not the arithmetic. Budget: about
10 s on 2 cores.
"""

from __future__ import annotations

import copy

import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.handlers import CheckpointLoader, StatsHandler

from monai_unlearn.engines import UnlearningTrainer, handlers_for_rank
from monai_unlearn.handlers import RevisionSaver
from monai_unlearn.inner import BoundarySearch
from monai_unlearn.transforms import TagForgetd, split_datalist

FORGET_RULE = "label in {1}"
EPSILON = 0.1


@pytest.fixture(autouse=True)
def _one_thread(single_torch_thread):
    yield


@pytest.fixture()
def network(modality_classifier):
    return copy.deepcopy(modality_classifier.network)


@pytest.fixture()
def split(modality_classifier):
    forget, retain = split_datalist(modality_classifier.train, FORGET_RULE)
    return forget[:32], retain[:64]


class CountingIterable:
    """Batches of a loader, with a count of how often they were iterated."""

    def __init__(self, loader):
        self.batches = list(loader)
        self.iterations = 0

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        self.iterations += 1
        return iter(self.batches)


class ForwardCounter:
    """Forward hook that records, per outer step, the number of forward passes and their batch sizes."""

    def __init__(self):
        self.current: list[int] = []
        self.per_step: list[list[int]] = []
        self.memory_formats: list[bool] = []

    def __call__(self, module, inputs, output):
        self.current.append(int(inputs[0].shape[0]))
        self.memory_formats.append(inputs[0].is_contiguous(memory_format=torch.channels_last))

    def attach(self, trainer: UnlearningTrainer, which: str) -> None:
        state = {"hooked": False}

        def start(engine):
            if not state["hooked"]:
                target = engine.original_network if which == "frozen" else engine.network
                target.register_forward_hook(self)
                state["hooked"] = True
            self.current = []

        def stop(engine):
            self.per_step.append(self.current)

        # Priority over the trainer's own handlers is not needed: the frozen copy exists once the pass has started.
        trainer.add_event_handler(Events.ITERATION_STARTED, start)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, stop)


def make_trainer(network, forget, retain=None, method="psg", flag=False, **kwargs) -> UnlearningTrainer:
    method_kwargs = {"epsilon": EPSILON, "box": (0.0, 1.0), **kwargs.pop("method_kwargs", {})}
    if flag:
        entries = [dict(e) for e in [*forget, *retain]]
        loaders = {"train_data_loader": DataLoader(Dataset(entries, transform=TagForgetd(FORGET_RULE)), batch_size=32)}
    else:
        loaders = {"train_data_loader": DataLoader(Dataset(forget), batch_size=16)}
        if retain is not None:
            loaders["retain_loader"] = retain
    return UnlearningTrainer(
        device="cpu",
        max_epochs=1,
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=1e-3),
        method=method,
        method_kwargs=method_kwargs,
        pairing="flag" if flag else "loaders",
        batchnorm="eval",
        **loaders,
        **kwargs,
    )


@pytest.mark.parametrize("steps", [1, 3])
def test_frozen_forward_passes_are_k_plus_one(network, split, steps):
    forget, _ = split
    trainer = make_trainer(network, forget, method_kwargs={"steps": steps, "early_stop": False})
    counter = ForwardCounter()
    counter.attach(trainer, "frozen")

    trainer.run()

    assert counter.per_step, "the trainer should have taken outer steps"
    for step, sizes in enumerate(counter.per_step, start=1):
        assert len(sizes) == steps + 1, f"outer step {step}: {len(sizes)} frozen forward passes, expected K + 1 = {steps + 1}"
    frozen = trainer.original_network
    assert all(p.grad is None for p in frozen.parameters()), "no parameter gradient may reach the frozen network"
    assert not any(p.requires_grad for p in frozen.parameters()), "the frozen network's parameters must not need grad"
    assert isinstance(trainer.history[-1]["forget_loss"], float), "pass summaries should hold plain floats"


def test_early_stop_labels_with_last_logits(modality_classifier, network):
    frozen = copy.deepcopy(network).eval().requires_grad_(False)
    images = torch.stack([e["image"] for e in modality_classifier.train[:48]])
    labels = torch.tensor([e["label"] for e in modality_classifier.train[:48]])
    fgsm = BoundarySearch(epsilon=0.5, steps=1, step_size=0.5, box=(0.0, 1.0))
    flipped = fgsm(frozen, images, labels).flip_fraction > 0.5
    assert int(flipped.sum()) >= 4, "a 0.5 FGSM step should flip the label of several training samples"
    counter = ForwardCounter()
    frozen.register_forward_hook(counter)
    search = BoundarySearch(epsilon=0.5, steps=4, step_size=0.5, box=(0.0, 1.0), early_stop="flip")

    result = search(frozen, images[flipped], labels[flipped])

    assert result.steps_run == 1, f"every sample flips after one step, so the search should stop there, ran {result.steps_run}"
    assert len(counter.current) == result.steps_run + 1, (
        f"{len(counter.current)} frozen forward passes for {result.steps_run} step(s): the last logits should label "
        "the points without another pass"
    )


@pytest.mark.parametrize(("method", "passes_per_step"), [("psg", 1), ("psg_retain", 2)])
def test_trainable_forward_passes_per_step(network, split, method, passes_per_step):
    forget, retain = split
    retain_loader = CountingIterable(DataLoader(Dataset(retain), batch_size=16))
    trainer = make_trainer(network, forget, retain=retain_loader, method=method)
    counter = ForwardCounter()
    counter.attach(trainer, "trainable")

    trainer.run()

    counts = {len(sizes) for sizes in counter.per_step}
    assert counts == {passes_per_step}, f"{method}: trainable forward passes per step {counts}, expected {passes_per_step}"
    expected_iterations = 1 if method == "psg_retain" else 0
    assert retain_loader.iterations == expected_iterations, (
        f"{method}: the retain loader was iterated {retain_loader.iterations} time(s), expected {expected_iterations}"
    )


def test_flag_mode_psg_computes_forget_only(network, split):
    forget, retain = split
    # Every batch of 32 contains forget samples, so no batch takes the prediction-only path of retain-only batches.
    mixed_forget, mixed_retain = forget[:30], retain[:60]
    trainer = make_trainer(network, mixed_forget, retain=mixed_retain, method="psg", flag=True)
    order = [entry for trio in zip(mixed_forget, mixed_retain[::2], mixed_retain[1::2]) for entry in trio]
    trainer.data_loader = DataLoader(Dataset(order, transform=TagForgetd(FORGET_RULE)), batch_size=32)
    expected = [[int(batch["forget"].sum())] for batch in trainer.data_loader]
    counter = ForwardCounter()
    counter.attach(trainer, "trainable")

    trainer.run()

    assert counter.per_step == expected, (
        f"trainable forward batch sizes {counter.per_step}, expected only the forget samples of each batch {expected}"
    )
    retain_samples = trainer.history[-1]["retain_samples"]
    assert retain_samples == 60, f"the pass summary counts {retain_samples} retain samples, expected all 60"


def test_flag_split_without_retain_term_builds_no_retain_batch(network, split):
    forget, retain = split
    trainer = make_trainer(network, forget[:4], retain=retain[:4], method="psg", flag=True)
    batch = next(iter(trainer.data_loader))

    forget_batch, retain_batch = trainer._split_batch(batch)

    assert retain_batch is None, "psg has no retain term, so the retain samples should not be copied into a batch"
    assert forget_batch is not None, "the forget samples should form the forget batch"
    assert len(forget_batch) == 4, f"the forget batch has {len(forget_batch)} samples, expected 4"


def test_channels_last_keeps_arithmetic(network, split):
    forget, retain = split
    reference = copy.deepcopy(network)
    make_trainer(reference, forget, retain=retain, method="psg_retain", flag=True).run()
    trainer = make_trainer(network, forget, retain=retain, method="psg_retain", flag=True, channels_last=True)
    counter = ForwardCounter()
    counter.attach(trainer, "frozen")

    trainer.run()

    convolutions = [p for p in network.parameters() if p.dim() == 4 and p.shape[1] > 1]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convolutions), "weights should be channels-last"
    assert counter.memory_formats and all(counter.memory_formats), "the frozen network should get channels-last inputs"
    for key, value in reference.state_dict().items():
        difference = float((network.state_dict()[key].float() - value.float()).abs().max())
        assert difference <= 1e-6, f"channels-last changed {key} by {difference:.3g} (allowed 1e-6, float rounding)"


def test_channels_last_rejects_network_without_convolutions(split):
    dense = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 3))
    with pytest.raises(ValueError, match="channels_last=True needs a network with 2-D or 3-D convolutions"):
        make_trainer(dense, split[0], channels_last=True)


def test_compile_compiles_frozen_copy(network, split):
    forget, _ = split
    reference = copy.deepcopy(network)
    make_trainer(reference, forget).run()
    trainer = make_trainer(network, forget, compile=True, compile_kwargs={"backend": "eager"})

    trainer.run()

    assert hasattr(trainer.original_network, "_orig_mod"), "the frozen copy should be compiled like the network"
    saved = trainer.state_dict()["unlearning"]["original_network"]
    assert not any(key.startswith("_orig_mod.") for key in saved), "saved original weights should be unwrapped"
    revised = trainer.network._orig_mod.state_dict()
    for key, value in reference.state_dict().items():
        difference = float((revised[key].float() - value.float()).abs().max())
        assert difference <= 1e-6, f"compiling changed {key} by {difference:.3g} (allowed 1e-6)"


def test_ddp_with_buffer_broadcast_is_rejected(network, split, tmp_path):
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        wrapped = torch.nn.parallel.DistributedDataParallel(network)
        with pytest.raises(ValueError, match="broadcast_buffers=False"):
            make_trainer(wrapped, split[0])
        accepted = make_trainer(torch.nn.parallel.DistributedDataParallel(network, broadcast_buffers=False), split[0])
        assert accepted._distributed, "a DDP network should switch the trainer to its multi-process behaviour"
    finally:
        torch.distributed.destroy_process_group()


def test_handlers_for_rank_keeps_writers_on_rank_zero(network, tmp_path):
    loader = CheckpointLoader(load_path=str(tmp_path / "model.pt"), load_dict={"model": network})
    saver = RevisionSaver(tmp_path / "model.pt")
    stats = StatsHandler()
    handlers = [loader, saver, stats]

    assert handlers_for_rank(handlers, rank=0) == handlers, "rank 0 should attach every handler"
    assert handlers_for_rank(handlers, rank=1) == [loader], "other ranks should only load the weights"
    assert handlers_for_rank(None, rank=1) == [], "no handlers should give an empty list"
    with pytest.raises(TypeError, match="every_rank must contain handler classes"):
        handlers_for_rank(handlers, every_rank=["CheckpointLoader"], rank=1)
