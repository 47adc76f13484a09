# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Build the modality classifier's images and datalist from the data directory.

Usage (from the bundle folder):

    python scripts/prepare_data.py [--data-dir DIR] [--output-dir data] [--small]

The data directory defaults to $MONAI_UNLEARN_DATA, then ../shared/data. ``--small`` keeps a few images per class and
split, for tests and quick tutorials.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from monai_unlearn.data import build_modality_dataset

SMALL_SETTING = dict(
    chest_counts=(60, 20, 40),
    breast_counts=(60, 20, 40),
    max_hippocampus_cases=20,
    hippocampus_slices=(0.5,),
    max_dicom_files_per_vendor=30,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="data directory (default: $MONAI_UNLEARN_DATA, then ../shared/data)")
    parser.add_argument(
        "--output-dir",
        default=str(Path(__file__).resolve().parents[1] / "data"),
        help="folder for the PNG images and datalist.json (default: the bundle's data/ folder)",
    )
    parser.add_argument("--small", action="store_true", help="keep a few images per class and split")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsampling and of the case split")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    settings = SMALL_SETTING if args.small else {}
    build_modality_dataset(args.output_dir, data_dir=args.data_dir, seed=args.seed, **settings)


if __name__ == "__main__":
    main()
