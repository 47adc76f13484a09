"""A two-process revision through torchrun and the multi_gpu_unlearn.json overlay, on CPU with the gloo backend.

The same revision runs once in one process with batches of 32 and once in two processes with batches of 16 each, and
the revised weights are compared. The two are the same computation when each process sees the same number of forget
and of retain samples in every step, which the test arranges by ordering the training list in pairs of equal flags
(the DistributedSampler without shuffling gives the even positions to rank 0 and the odd ones to rank 1):

- DDP averages the two processes' gradients, and the average of two per-process means over equal counts is the
  mean over the whole batch, so the gradient is the single-process gradient up to float summation order;
- the optimizer is SGD, whose step is proportional to the gradient; Adam's first step is close to ``lr * sign(g)``,
  which would turn float rounding in near-zero gradient components into steps of the full learning rate;
- the noise of the inner search is off, because each process draws from its own generator (seeded with seed + rank);
- the bundle's BatchNorm policy is ``eval``: running statistics are used and not updated, so the per-process batch
  statistics that would differ under the ``train`` policy play no part;
- the random augmentations are off, because each process applies them to its own samples.

The tolerance of 1e-6 on the weights covers float rounding: the same arithmetic summed in another order, over six SGD
steps of size 0.01. Budget: about 30 s on 2 cores (two bundle runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import copy_trained_bundle, run_bundle_cli
from monai_unlearn.utils import sha256_file

WEIGHT_TOLERANCE = 1e-6
CONFIGS = ["configs/train.json", "configs/unlearn.json"]


def paired_datalist(bundle: Path) -> Path:
    """Write the training list in pairs of equal forget flags (forget pair, retain pair, retain pair, ...)."""
    datalist = json.loads((bundle / "data" / "datalist.json").read_text())
    data = (bundle / "data").resolve()
    for split in ("training", "validation", "test"):
        for entry in datalist[split]:
            entry["image"] = str(data / entry["image"])
    forget = [entry for entry in datalist["training"] if entry["label"] == 1]
    retain = [entry for entry in datalist["training"] if entry["label"] != 1]
    forget, retain = forget[: len(forget) // 2 * 2], retain[: len(retain) // 4 * 4]
    pairs_forget = [forget[i : i + 2] for i in range(0, len(forget), 2)]
    pairs_retain = [retain[i : i + 2] for i in range(0, len(retain), 2)]
    ordered = []
    for index, pair in enumerate(pairs_forget):
        ordered += pair + sum(pairs_retain[2 * index : 2 * index + 2], [])
    ordered += sum(pairs_retain[2 * len(pairs_forget) :], [])
    datalist["training"] = ordered
    path = bundle / "paired_datalist.json"
    path.write_text(json.dumps(datalist))
    return path


def equivalence_overlay(bundle: Path, batch_size: int, sampler: bool) -> str:
    overlay = {
        "datalist_file": str(paired_datalist(bundle)),
        "train#random_transforms": [],
        "batch_size": batch_size,
        "optimizer": {"_target_": "torch.optim.SGD", "params": "$@network.parameters()", "lr": 0.01},
        "unlearn#method_kwargs#noise_scale": 0.0,
        "unlearn#passes": 1,
        "train#sampler#shuffle" if sampler else "train#dataloader#shuffle": False,
    }
    path = bundle / "configs" / "test_equivalence.json"
    path.write_text(json.dumps(overlay, indent=1))
    return "configs/test_equivalence.json"


def torchrun(bundle: Path, configs: list[str]) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "monai.bundle", "run", "--config_file", str(configs),
        "--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf",
    ]  # fmt: skip
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    result = subprocess.run(command, cwd=bundle, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def revised_weights(bundle: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(bundle / "models" / "model.pt", weights_only=True)
    return checkpoint.get("model", checkpoint)


@pytest.fixture(scope="module")
def runs(trained_zoo_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    single = copy_trained_bundle(trained_zoo_bundle, tmp_path_factory.mktemp("single") / "bundle")
    run_bundle_cli(single, ["run", "--config_file", str([*CONFIGS, equivalence_overlay(single, 32, sampler=False)]),
                            "--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf"])
    multi = copy_trained_bundle(trained_zoo_bundle, tmp_path_factory.mktemp("multi") / "bundle")
    overlays = [*CONFIGS, "configs/multi_gpu_unlearn.json", equivalence_overlay(multi, 16, sampler=True)]
    result = torchrun(multi, overlays)
    return {"single": single, "multi": multi, "log": result.stdout + result.stderr, "trained": trained_zoo_bundle}


def test_two_processes_match_one(runs):
    single, multi = revised_weights(runs["single"]), revised_weights(runs["multi"])
    original = torch.load(runs["trained"] / "models" / "trained.pt", weights_only=True)
    original = original.get("model", original)
    moved = max(float((single[k].float() - original[k].float()).abs().max()) for k in single)
    assert moved > 100 * WEIGHT_TOLERANCE, f"the revision moved the weights by only {moved:.3g}; the comparison is void"
    for key in single:
        difference = float((single[key].float() - multi[key].float()).abs().max())
        assert difference <= WEIGHT_TOLERANCE, f"{key}: two processes differ from one by {difference:.3g}"


def test_pass_counts_cover_all_processes(runs):
    def passes(bundle: Path) -> list[dict]:
        return json.loads((bundle / "eval" / "unlearning" / "unlearning_report.json").read_text())["passes"]

    single, multi = passes(runs["single"])[0], passes(runs["multi"])[0]
    for key in ("forget_samples", "retain_samples"):
        assert multi[key] == single[key], f"{key}: the two-process summary has {multi[key]}, one process {single[key]}"


def test_only_rank_zero_writes_files(runs):
    log = runs["log"]
    for message in ("Kept the original checkpoint", "Wrote the revised weights", "Wrote the unlearning report"):
        assert log.count(message) == 1, f"{message!r} appears {log.count(message)} times; only rank 0 should write"
    assert log.count("Restored all variables from") == 2, "both processes should load the trained weights"


def test_original_checkpoint_is_kept(runs):
    trained = runs["trained"] / "models" / "trained.pt"
    backups = list((runs["multi"] / "models").glob("model.original-*.pt"))
    assert len(backups) == 1, f"expected one kept original checkpoint, found {[b.name for b in backups]}"
    assert sha256_file(backups[0]) == sha256_file(trained), "the kept original differs from the trained checkpoint"
    assert sha256_file(runs["multi"] / "models" / "model.pt") != sha256_file(trained), "model.pt should be revised"
