# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Build the hippocampus bundle's datalist and a demo deletion request from the data directory.

Usage (from the bundle folder):

    python scripts/prepare_data.py [--data-dir DIR] [--output-dir data] [--small]

The data directory defaults to $MONAI_UNLEARN_DATA, then ../shared/data; it must hold msd_hippocampus/images and
msd_hippocampus/labels. No image is copied: data/datalist.json points at the NIfTI files. Each entry carries the
case ID, the hippocampal volume and the anterior and posterior volumes in millilitres (voxel count times the voxel
volume from the label header), the spacing, the shape and the stored image data type. data/deletion_request.txt lists
a few training case IDs, one per line, for the forget_cases.json overlay. ``--small`` keeps 24 cases, for tests and
quick tutorials.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from monai_unlearn.data import build_hippocampus_datalist

SMALL_SETTING = dict(max_cases=24, deletion_request_size=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir", default=None, help="data directory (default: $MONAI_UNLEARN_DATA, then ../shared/data)"
    )
    parser.add_argument(
        "--output-dir",
        default=str(Path(__file__).resolve().parents[1] / "data"),
        help="folder for datalist.json and deletion_request.txt (default: the bundle's data/ folder)",
    )
    parser.add_argument("--small", action="store_true", help="keep 24 cases and a deletion request of 4 cases")
    parser.add_argument("--deletion-request-size", type=int, default=None, help="training cases in the demo request")
    parser.add_argument("--seed", type=int, default=0, help="seed of the case split and of the deletion request")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    settings = dict(SMALL_SETTING) if args.small else {}
    if args.deletion_request_size is not None:
        settings["deletion_request_size"] = args.deletion_request_size
    build_hippocampus_datalist(args.output_dir, data_dir=args.data_dir, seed=args.seed, **settings)


if __name__ == "__main__":
    main()
