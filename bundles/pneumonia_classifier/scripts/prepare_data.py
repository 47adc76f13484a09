# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Build the pneumonia classifier's images and datalist from the data directory.

Usage (from the bundle folder):

    python scripts/prepare_data.py [--data-dir DIR] [--output-dir data] [--small]

The data directory defaults to $MONAI_UNLEARN_DATA, then ../shared/data. Each training image gets a
``request_group`` from 0 to 9, so that ``"request_group == g"`` selects a random 10 % of the training images.
``--small`` keeps a few images per split, for tests and quick runs.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from monai_unlearn.data import build_pneumonia_dataset

#: Training, validation and test images of the small setting.
SMALL_COUNTS = (200, 40, 80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir", default=None, help="data directory (default: $MONAI_UNLEARN_DATA, then ../shared/data)"
    )
    parser.add_argument(
        "--output-dir",
        default=str(Path(__file__).resolve().parents[1] / "data"),
        help="folder for the PNG images and datalist.json (default: the bundle's data/ folder)",
    )
    parser.add_argument("--small", action="store_true", help=f"keep {SMALL_COUNTS} images (training, validation, test)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsampling and of the request groups")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    counts = SMALL_COUNTS if args.small else (None, None, None)
    build_pneumonia_dataset(args.output_dir, data_dir=args.data_dir, counts=counts, seed=args.seed)


if __name__ == "__main__":
    main()
