# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Benchmark: peak memory of a revision against plain fine-tuning of the same network with the same batch size.

Every measurement runs in a fresh Python process (this script started again with ``--measure``), so that no
earlier measurement's peak or cached memory counts towards the next. In that process the network, the optimizer and
the batches are built first, then the peak is reset to the current use, a few steps run, and the peak growth is
read:

- on CPU, the growth of the peak resident set size (``VmHWM``, reset by writing 5 to ``/proc/self/clear_refs``,
  Linux 4.0 or later). Tensor memory on CPU comes from the C allocator, which Python's ``tracemalloc`` does not see,
  and the process's own resident set is what a user sees in ``top``; the growth removes the fixed cost of Python,
  torch and MONAI, which is the same for every setting;
- on CUDA, ``torch.cuda.max_memory_allocated`` after ``torch.cuda.reset_peak_memory_stats``, minus the memory
  allocated before the steps.

Usage (from the repository root)::

    python benchmarks/memory.py                 # results in docs/benchmarks/memory.md
    python benchmarks/memory.py --small         # small dataset, one step per setting: a check that runs in seconds
    python benchmarks/memory.py --device cuda:0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import common

FORGET_CLASS = 1
BATCH_SIZE = 64
SETTINGS: dict[str, dict[str, Any]] = {
    "fine-tuning (plain step: forward, cross-entropy, backward, Adam)": {"kind": "finetune"},
    "revision, flag mode, psg_retain (the bundle's unlearn.json)": {"kind": "flag", "method": "psg_retain"},
    "revision, paired loaders, psg (retain term off)": {"kind": "loaders", "method": "psg"},
    "revision, paired loaders, psg_retain": {"kind": "loaders", "method": "psg_retain"},
    "revision, paired loaders, psg_multistep (K = 5)": {"kind": "loaders", "method": "psg_multistep"},
}
#: The settings measured with --small: fine-tuning and the bundle's own revision.
SMALL_SETTINGS = list(SETTINGS)[:2]


# ------------------------------------------------------------------------------------------------ the child process
def reset_peak(device: torch.device) -> int:
    """Reset the peak memory to the current use and return the current use in bytes."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return common.current_rss_bytes()


def read_peak(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    return common.peak_rss_bytes()


def measure_in_this_process(setting: dict[str, Any], batches_file: str, steps: int, device: torch.device) -> dict:
    """Build everything, reset the peak, run ``steps`` outer steps and return the peak growth in bytes."""
    data = torch.load(batches_file, weights_only=True)
    network = common.bundle_network().to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=5e-4)
    kind = setting["kind"]

    if kind == "finetune":
        batches = [(images.to(device), labels.to(device)) for images, labels in data["mixed"][:steps]]
        baseline = reset_peak(device)
        network.train()
        for images, labels in batches:
            optimizer.zero_grad(set_to_none=False)
            F.cross_entropy(network(images), labels).backward()
            optimizer.step()
    else:
        from monai_unlearn.engines import UnlearningTrainer

        def to_dicts(pairs: list, forget: int | None) -> list[dict[str, torch.Tensor]]:
            out = []
            for images, labels in pairs:
                flags = (labels == FORGET_CLASS).long() if forget is None else torch.full_like(labels, forget)
                out.append({"image": images.to(device), "label": labels.to(device), "forget": flags})
            return out

        if kind == "flag":
            loaders: dict[str, Any] = {"train_data_loader": to_dicts(data["mixed"][:steps], None)}
        else:
            loaders = {
                "train_data_loader": to_dicts(data["forget"][:steps], 1),
                "retain_loader": to_dicts(data["retain"][:steps], 0),
            }
        trainer = UnlearningTrainer(
            device=device,
            max_epochs=1,
            network=network,
            optimizer=optimizer,
            method=setting["method"],
            method_kwargs={"epsilon": 0.2, "box": (0.0, 1.0)},
            pairing=kind,
            batchnorm="eval",
            decollate=False,
            **loaders,
        )
        # The frozen copy is part of the revision's memory, so it is made after the reset, inside run().
        baseline = reset_peak(device)
        trainer.run()
    peak = read_peak(device)
    return {"baseline_bytes": baseline, "peak_bytes": peak, "growth_bytes": peak - baseline}


# ------------------------------------------------------------------------------------------------ the parent process
def save_batches(images: torch.Tensor, labels: torch.Tensor, steps: int, path: Path) -> None:
    """Save ``steps`` batches of each kind (mixed, forget only, retain only) of real images for the children."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    forget_order = order[labels[order] == FORGET_CLASS]
    retain_order = order[labels[order] != FORGET_CLASS]

    def batches(index: torch.Tensor) -> list:
        chunks = [index[i : i + BATCH_SIZE] for i in range(0, steps * BATCH_SIZE, BATCH_SIZE)]
        return [(images[c].clone(), labels[c].clone()) for c in chunks if len(c)]

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"mixed": batches(order), "forget": batches(forget_order), "retain": batches(retain_order)}, path)


def measure_in_fresh_process(name: str, batches_file: Path, steps: int, device: str, threads: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", name, "--batches-file", str(batches_file),
               "--steps", str(steps), "--device", device, "--threads", str(threads)]
    result = common.run_measured(command, cwd=common.REPOSITORY)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--small", action="store_true", help="small dataset, one step, fine-tuning and the bundle's revision only"
    )
    parser.add_argument("--steps", type=int, default=None, help="outer steps per measurement (default 3, small 1)")
    parser.add_argument("--device", default="cpu", help="torch device, for example cpu or cuda:0 (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--data-dir", default=None, help="data directory (default: $MONAI_UNLEARN_DATA, ../shared/data)")
    parser.add_argument("--work-dir", default="benchmarks/work", help="folder for the prepared images")
    parser.add_argument("--output", default=None, help="results page (default docs/benchmarks/memory.md, "
                        "or WORK_DIR/memory.small.md with --small)")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batches-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    common.set_threads(args.threads)
    steps = args.steps or (1 if args.small else 3)

    if args.measure is not None:
        result = measure_in_this_process(SETTINGS[args.measure], args.batches_file, steps, torch.device(args.device))
        print(json.dumps(result))
        return

    if torch.device(args.device).type == "cpu" and not Path("/proc/self/clear_refs").exists():
        raise SystemExit("Measuring CPU memory needs Linux (/proc/self/clear_refs); run with --device cuda:0 instead.")
    started = time.time()
    datalist = common.prepare_modality_data(args.work_dir, args.small, args.data_dir)
    images, labels = common.load_modality_split(datalist)
    batches_file = Path(args.work_dir) / ("memory_batches_small.pt" if args.small else "memory_batches.pt")
    save_batches(images, labels, steps, batches_file)

    names = SMALL_SETTINGS if args.small else list(SETTINGS)
    results = {name: measure_in_fresh_process(name, batches_file, steps, args.device, args.threads) for name in names}
    reference = results[next(iter(SETTINGS))]["growth_bytes"]
    rows = []
    for name, result in results.items():
        growth = result["growth_bytes"]
        rows.append([name, result["baseline_bytes"] / 2**20, growth / 2**20, growth / reference])
    what = "peak RSS growth" if torch.device(args.device).type == "cpu" else "peak allocated growth"
    columns = ["setting", "memory before the steps, MiB", f"{what}, MiB", "ratio to fine-tuning"]
    table = common.Table(f"Peak memory of {steps} outer step(s), batch size {BATCH_SIZE}, on {args.device}", columns, rows)
    common.print_tables([table])

    output = Path(args.output) if args.output else (
        Path(args.work_dir) / "memory.small.md" if args.small else common.RESULTS_DIR / "memory.md"
    )
    notes = [
        "The target is a ratio of at most 1.5 to plain fine-tuning with the same batch size. An outer step of the "
        "flag mode and of the paired mode with the retain term off holds the activations of one batch, like "
        "fine-tuning, plus the frozen copy of the weights; the inner search's activations are freed before the outer "
        "forward pass. The paired mode with the retain term on takes a forget batch and a retain batch of the "
        "configured size in each step, so it holds the activations of two batches: to stay within the memory of "
        "fine-tuning, halve its batch size.",
        "Memory before the steps is the process's resident set (CPU) or allocated memory (CUDA) after building the "
        "network, the optimizer and the batches; it is mostly Python, torch and MONAI themselves on CPU.",
    ]
    extra = {
        "Data": f"batches of real modality images (28x28) from a training set of {len(images)}, forgotten class "
        f"{FORGET_CLASS}",
        "Network": "the bundle's DenseNet (configs/train.json), Adam, BatchNorm policy eval, epsilon 0.2",
        "Measurement": "one fresh process per setting; " + (
            "peak RSS growth from /proc/self/clear_refs and VmHWM" if args.device == "cpu"
            else "torch.cuda.max_memory_allocated growth"
        ),
    }
    page = common.write_results_page(
        output,
        "Peak memory of a revision against plain fine-tuning",
        "Peak memory growth during a few outer steps of a revision and of plain fine-tuning of the same network with "
        "the same batch size, each in a fresh process (see `benchmarks/memory.py`).",
        [table],
        notes,
        started,
        extra,
    )
    print(f"Wrote {page}")


if __name__ == "__main__":
    main()
