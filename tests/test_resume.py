"""Determinism and resume of a revision, through the bundle CLI and through the Python API.

Through the CLI (flat test bundle), the same revision run twice gives identical weights. A revision killed with
SIGKILL after its first resume checkpoint, then resumed with `revise(resume=True)`, ends with the same weights as an
uninterrupted run, and the original checkpoint stays intact. Through the Python API: the trainer resumes exactly
in the middle of a pass and at the end of a pass, with one tagged loader or with separate forget and retain loaders,
and without the saved random state it would not. Budget: about 55 s on 2 cores.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from ignite.engine import Events

from conftest import ModalityClassifier, copy_trained_bundle, make_modality_network
from monai_unlearn.bundle import ForgetRequest, RevisionResult, find_resume_checkpoint, revise
from monai_unlearn.engines import UnlearningTrainer
from monai_unlearn.utils import sha256_file

REQUEST = ForgetRequest(
    rule="label in {1}", method="psg_retain", method_kwargs={"epsilon": 0.1, "box": [0.0, 1.0]}, passes=2,
    learning_rate=0.001,
)
OPTIONS = dict(checkpoint_interval=3, overrides={"batch_size": 16})
ENVIRONMENT = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def assert_same_weights(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor], what: str) -> None:
    assert expected.keys() == actual.keys(), f"{what}: the checkpoints have different keys"
    differing = [k for k in expected if not torch.equal(expected[k], actual[k])]
    assert not differing, f"{what}: {len(differing)} tensors differ, for example {differing[:3]}"


@dataclass
class InterruptedRun:
    bundle: Path
    original_sha: str
    sha_after_kill: str
    backup_after_kill: bool
    checkpoints_after_kill: list[str]
    result: RevisionResult


@pytest.fixture(scope="module")
def uninterrupted(trained_flat_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> list[RevisionResult]:
    """The same revision run twice from two copies of the trained bundle."""
    results = []
    for name in ("first", "second"):
        bundle = copy_trained_bundle(trained_flat_bundle, tmp_path_factory.mktemp("uninterrupted") / name)
        results.append(revise(bundle, REQUEST, env=ENVIRONMENT, **OPTIONS))
    return results


@pytest.fixture(scope="module")
def interrupted(trained_flat_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> InterruptedRun:
    """A revision killed with SIGKILL once its first complete resume checkpoint exists, then resumed."""
    bundle = copy_trained_bundle(trained_flat_bundle, tmp_path_factory.mktemp("interrupted") / "bundle")
    checkpoint = bundle / "models" / "model.pt"
    original_sha = sha256_file(checkpoint)
    command = revise(bundle, REQUEST, dry_run=True, **OPTIONS).command
    work = bundle / "models" / "revision_checkpoints"
    process = subprocess.Popen(command, cwd=bundle, env=ENVIRONMENT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        # MONAI's CheckpointSaver writes in place, so wait for a complete file, not just for a file.
        while process.poll() is None and find_resume_checkpoint(work) is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, f"the revision should have been killed, exit code {process.returncode}"
    after_kill = sha256_file(checkpoint)
    backup = (bundle / "models" / f"model.original-{original_sha[:12]}.pt").is_file()
    names = sorted(p.name for p in work.glob("revision*.pt"))
    result = revise(bundle, REQUEST, resume=True, env=ENVIRONMENT, **OPTIONS)
    return InterruptedRun(bundle, original_sha, after_kill, backup, names, result)


def test_same_seed_gives_identical_weights(uninterrupted: list[RevisionResult]):
    first, second = uninterrupted
    assert first.revised_sha256 != first.original_sha256, "the revision should change the weights"
    assert_same_weights(load_weights(first.checkpoint), load_weights(second.checkpoint), "two identical revisions")


def test_killed_revision_resumes_to_same_weights(uninterrupted: list[RevisionResult], interrupted: InterruptedRun):
    assert interrupted.checkpoints_after_kill, "the kill should come after at least one resume checkpoint"
    assert interrupted.result.resumed_from is not None, "the second run should resume, not start again"
    iteration = int(re.findall(r"\d+", interrupted.result.resumed_from.stem)[-1])
    assert 0 < iteration < 24, f"the resume point should lie inside the 24 iterations, got {iteration}"
    assert_same_weights(
        load_weights(uninterrupted[0].checkpoint), load_weights(interrupted.result.checkpoint), "resumed vs uninterrupted"
    )


def test_original_intact_through_kill_and_resume(interrupted: InterruptedRun):
    assert interrupted.sha_after_kill == interrupted.original_sha, "the kill must leave models/model.pt untouched"
    assert interrupted.backup_after_kill, "the original should already be kept under its hash name during the run"
    backup = interrupted.bundle / "models" / f"model.original-{interrupted.original_sha[:12]}.pt"
    assert sha256_file(backup) == interrupted.original_sha, "the kept original must match the trained checkpoint"
    assert interrupted.result.original_sha256 == interrupted.original_sha


def test_resumed_revision_records_one_version(interrupted: InterruptedRun):
    assert interrupted.result.version == "1.0.1", f"one revision means one patch bump, got {interrupted.result.version}"
    assert not (interrupted.bundle / "models" / "revision_checkpoints").exists(), "resume checkpoints should be removed"


# ---------------------------------------------------------------------------------------------------------------------
# The trainer through the Python API: exact continuation at chosen iterations.


class Interrupt(Exception):
    """Stands for a kill: raised from a handler right after the state was saved."""


def build_trainer(data: ModalityClassifier, pairing: str) -> tuple[UnlearningTrainer, torch.nn.Module, torch.optim.Optimizer]:
    from monai.data import DataLoader, Dataset
    from monai.transforms import Compose, RandAffined, RandFlipd
    from monai.utils import set_determinism

    from monai_unlearn.transforms import TagForgetd

    set_determinism(0)
    entries = [{"image": e["image"], "label": e["label"]} for e in data.train]
    augment = [RandFlipd("image", prob=0.5, spatial_axis=1), RandAffined("image", prob=0.5, rotate_range=0.15)]
    if pairing == "flag":
        dataset = Dataset(entries, Compose([TagForgetd("label in {1}"), *augment]))
        loader, retain = DataLoader(dataset, batch_size=32, shuffle=True), None
    else:
        shared = Compose(augment)  # one transform object for both loaders, as in the paired overlay
        forget = [e for e in entries if e["label"] == 1]
        kept = [e for e in entries if e["label"] != 1]
        loader = DataLoader(Dataset(forget, shared), batch_size=16, shuffle=True)
        retain = DataLoader(Dataset(kept, shared), batch_size=16, shuffle=True)
    network = make_modality_network()
    network.load_state_dict(data.state())
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    trainer = UnlearningTrainer(
        "cpu", 2, loader, network, optimizer, method="psg_retain", method_kwargs={"epsilon": 0.1, "box": [0.0, 1.0]},
        retain_loader=retain, batchnorm="eval",
    )
    return trainer, network, optimizer


def run_with_interruption(data: ModalityClassifier, pairing: str, stop: int, keep_random_state: bool = True) -> dict:
    trainer, network, optimizer = build_trainer(data, pairing)
    saved = io.BytesIO()

    @trainer.on(Events.ITERATION_COMPLETED(once=stop))
    def save_and_stop(engine: UnlearningTrainer) -> None:
        torch.save({"trainer": engine.state_dict(), "network": network.state_dict(), "optimizer": optimizer.state_dict()}, saved)
        raise Interrupt()

    with pytest.raises(Interrupt):
        trainer.run()
    state = torch.load(io.BytesIO(saved.getvalue()), weights_only=True)
    if not keep_random_state:
        state["trainer"]["unlearning"].pop("random_state")
    trainer, network, optimizer = build_trainer(data, pairing)

    @trainer.on(Events.STARTED)
    def resume(engine: UnlearningTrainer) -> None:
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        engine.load_state_dict(state["trainer"])

    trainer.run()
    return {"weights": dict(network.state_dict()), "history": trainer.history}


@pytest.fixture(scope="module")
def reference_runs(modality_classifier: ModalityClassifier, single_torch_thread) -> dict[str, dict]:
    runs = {}
    for pairing in ("flag", "loaders"):
        trainer, network, _ = build_trainer(modality_classifier, pairing)
        trainer.run()
        runs[pairing] = {"weights": dict(network.state_dict()), "history": trainer.history, "length": trainer.state.epoch_length}
    return runs


@pytest.mark.parametrize("pairing, stop", [("flag", 4), ("flag", 6), ("loaders", 3)], ids=["mid-pass", "pass-end", "loaders"])
def test_trainer_resumes_exactly(modality_classifier: ModalityClassifier, reference_runs: dict, pairing: str, stop: int):
    reference = reference_runs[pairing]
    assert 0 < stop < 2 * reference["length"], f"stop {stop} must fall inside the run of {2 * reference['length']}"
    resumed = run_with_interruption(modality_classifier, pairing, stop)
    assert_same_weights(reference["weights"], resumed["weights"], f"{pairing} resumed after iteration {stop}")
    assert resumed["history"] == reference["history"], "the pass summaries should match the uninterrupted run"


def test_resume_without_random_state_differs(modality_classifier: ModalityClassifier, reference_runs: dict):
    resumed = run_with_interruption(modality_classifier, "flag", 4, keep_random_state=False)
    differing = [k for k, v in reference_runs["flag"]["weights"].items() if not torch.equal(v, resumed["weights"][k])]
    assert differing, "without the saved random state the data stream restarts, so the weights should differ"
