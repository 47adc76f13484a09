# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Benchmark: how the cost of one revision pass grows with the forget set, the retain set and the inner steps.

Each cell is the median wall time of one pass of :class:`monai_unlearn.engines.UnlearningTrainer` over loaders that
apply the bundle's own random augmentations (``train#random_transforms`` of the modality classifier's train.json) to
real images held in memory, with the bundle's network and batch size. Three sweeps:

- forget set size, retain set fixed;
- retain set size, forget set fixed. With the retain term off, the paired-loader mode (``retain_loader``) never
  iterates the retain loader, so its cost must stay flat. The flag mode iterates the bundle's whole training loader,
  so it loads, augments and splits every retain sample each pass even when it computes nothing on them;
- number of inner steps ``K``.

Usage (from the repository root)::

    python benchmarks/scaling.py            # full sizes, results in docs/benchmarks/scaling.md
    python benchmarks/scaling.py --small    # small sizes, one repeat: a check that runs in seconds
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset
from monai.transforms import Compose

import common

FORGET_CLASS = 1
EPSILON = 0.2
BATCH_SIZE = 64
FULL = dict(forget_sizes=[64, 128, 256, 512], retain_fixed=512, retain_sizes=[256, 512, 1024], forget_fixed=256,
            steps=[1, 2, 4, 8], steps_forget=256, repeats=3)
SMALL = dict(forget_sizes=[16, 32], retain_fixed=32, retain_sizes=[32, 64], forget_fixed=16, steps=[1, 2],
             steps_forget=16, repeats=1)
MODES = {
    "paired, retain off (psg)": ("loaders", "psg"),
    "paired, retain on (psg_retain)": ("loaders", "psg_retain"),
    "flag, retain off (psg)": ("flag", "psg"),
    "flag, retain on (psg_retain)": ("flag", "psg_retain"),
}


def random_augmentation() -> Compose:
    """Return the bundle's ``train#random_transforms`` as a Compose, parsed from its train.json."""
    parser = ConfigParser()
    parser.read_config(str(common.MODALITY_BUNDLE / "configs" / "train.json"))
    return Compose(parser.get_parsed_content("train#random_transforms"))


def subset(images: torch.Tensor, labels: torch.Tensor, forget: int, retain: int) -> list[dict[str, Any]]:
    """Return ``forget`` samples of the forgotten class and ``retain`` of the others, as datalist entries."""
    forget_index = (labels == FORGET_CLASS).nonzero().reshape(-1)
    retain_index = (labels != FORGET_CLASS).nonzero().reshape(-1)
    if forget > len(forget_index) or retain > len(retain_index):
        raise ValueError(
            f"Requested {forget} forget and {retain} retain samples, but the data has {len(forget_index)} and "
            f"{len(retain_index)}; use --small or smaller sizes."
        )
    chosen = [*forget_index[:forget].tolist(), *retain_index[:retain].tolist()]
    return [{"image": images[i], "label": int(labels[i]), "forget": int(labels[i] == FORGET_CLASS)} for i in chosen]


def loader(entries: list[dict[str, Any]], augmentation: Compose) -> DataLoader:
    return DataLoader(
        Dataset(entries, transform=augmentation),
        batch_size=BATCH_SIZE,
        shuffle=True,
        num_workers=0,
        generator=torch.Generator().manual_seed(0),
    )


def one_pass(
    network: torch.nn.Module,
    entries: list[dict[str, Any]],
    pairing: str,
    method: str,
    augmentation: Compose,
    steps: int = 1,
) -> tuple[float, int]:
    """Run one revision pass from the initial weights; return its wall time and the number of outer steps."""
    from monai_unlearn.engines import UnlearningTrainer

    model = common.bundle_network()
    model.load_state_dict(network.state_dict())
    method_kwargs: dict[str, Any] = {"epsilon": EPSILON, "box": (0.0, 1.0)}
    if steps > 1:
        method_kwargs.update(steps=steps, early_stop=False)
    if pairing == "flag":
        loaders: dict[str, Any] = {"train_data_loader": loader(entries, augmentation)}
    else:
        forget = [entry for entry in entries if entry["forget"]]
        retain = [entry for entry in entries if not entry["forget"]]
        loaders = {"train_data_loader": loader(forget, augmentation), "retain_loader": loader(retain, augmentation)}
    trainer = UnlearningTrainer(
        device="cpu",
        max_epochs=1,
        network=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=5e-4),
        method=method,
        method_kwargs=method_kwargs,
        pairing=pairing,
        batchnorm="eval",
        decollate=False,
        **loaders,
    )
    start = time.perf_counter()
    trainer.run()
    return time.perf_counter() - start, int(trainer.state.iteration)


def sweep(
    name: str,
    sizes: list[int],
    make_entries: Any,
    modes: dict[str, tuple[str, str]],
    network: torch.nn.Module,
    augmentation: Compose,
    repeats: int,
    steps_of: Any = None,
) -> common.Table:
    """Time one pass for each size and mode; return a table with seconds, outer steps and the ratio to the first size."""
    rows = []
    first: dict[str, float] = {}
    for size in sizes:
        for label, (pairing, method) in modes.items():
            steps = steps_of(size) if steps_of is not None else 1
            results = [one_pass(network, make_entries(size), pairing, method, augmentation, steps) for _ in range(repeats)]
            seconds = common.median([r[0] for r in results])
            first.setdefault(label, seconds)
            rows.append([size, label, results[0][1], seconds, seconds / first[label]])
    columns = [name, "mode", "outer steps per pass", "seconds per pass (median)", "time relative to the first row"]
    return common.Table(f"Cost against {name}", columns, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="small sizes and one repeat (a quick check, seconds)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--data-dir", default=None, help="data directory (default: $MONAI_UNLEARN_DATA, ../shared/data)")
    parser.add_argument("--work-dir", default="benchmarks/work", help="folder for the prepared images")
    parser.add_argument("--output", default=None, help="results page (default docs/benchmarks/scaling.md, "
                        "or WORK_DIR/scaling.small.md with --small)")
    args = parser.parse_args()
    started = time.time()
    common.set_threads(args.threads)
    sizes = SMALL if args.small else FULL

    datalist = common.prepare_modality_data(args.work_dir, args.small, args.data_dir)
    images, labels = common.load_modality_split(datalist)
    network = common.bundle_network()
    augmentation = random_augmentation()
    repeats = sizes["repeats"]

    forget_table = sweep(
        "forget set size",
        sizes["forget_sizes"],
        lambda n: subset(images, labels, n, sizes["retain_fixed"]),
        {k: v for k, v in MODES.items() if k != "flag, retain off (psg)"},
        network,
        augmentation,
        repeats,
    )
    retain_table = sweep(
        "retain set size",
        sizes["retain_sizes"],
        lambda n: subset(images, labels, sizes["forget_fixed"], n),
        MODES,
        network,
        augmentation,
        repeats,
    )
    steps_table = sweep(
        "inner steps K",
        sizes["steps"],
        lambda _: subset(images, labels, sizes["steps_forget"], sizes["retain_fixed"]),
        {"paired, retain off (psg)": MODES["paired, retain off (psg)"]},
        network,
        augmentation,
        repeats,
        steps_of=lambda k: k,
    )
    tables = [forget_table, retain_table, steps_table]
    common.print_tables(tables)

    output = Path(args.output) if args.output else (
        Path(args.work_dir) / "scaling.small.md" if args.small else common.RESULTS_DIR / "scaling.md"
    )
    notes = [
        "Forget set: in the paired mode an outer step takes one forget batch (plus one retain batch with the retain "
        "term on), so the cost grows linearly with the forget set. In the flag mode the number of outer steps is the "
        "number of batches of the whole training set, and each carries its share of forget and retain samples.",
        "Retain set: with the retain term off, the paired mode never iterates the retain loader (a test checks that "
        "it is not iterated at all), so its cost must stay flat; with the retain term on it draws one retain batch "
        "per forget batch, so its cost is flat too. The flag mode iterates the bundle's whole training loader: every "
        "retain sample is loaded, augmented, collated and split off each pass, and the forget samples are spread "
        "over more, smaller outer steps, so its cost grows with the retain set even when the retain term is off. "
        "For a large retain set and no retain term, give the trainer separate forget and retain loaders "
        "(`configs/unlearn_paired.json`).",
        "Inner steps: each inner step is one forward and one input-gradient backward pass of the frozen network on "
        "the forget batch, on top of a fixed cost per outer step (the final labelling pass and the outer step), so "
        "the cost grows linearly in K with a slope below one.",
    ]
    extra = {
        "Data": f"real modality images (28x28) held in memory, from a training set of {len(images)}; forgotten class "
        f"{FORGET_CLASS}; the bundle's random augmentations applied per sample by the loader",
        "Network and batch": f"the bundle's DenseNet (configs/train.json), batch size {BATCH_SIZE}, Adam, BatchNorm "
        "policy eval, epsilon 0.2",
        "Repeats": f"median of {repeats} pass(es) per cell",
    }
    page = common.write_results_page(
        output,
        "Cost of a revision pass against the forget set, the retain set and the inner steps",
        "One pass of the unlearning trainer, timed for each size of the forget set, the retain set and the number of "
        "inner steps, in the paired-loader and the flag modes (see `benchmarks/scaling.py`).",
        tables,
        notes,
        started,
        extra,
    )
    print(f"Wrote {page}")


if __name__ == "__main__":
    main()
