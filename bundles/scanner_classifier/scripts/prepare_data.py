# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Write the scanner classifier's datalist, which points at the real GE and SIEMENS DICOM files of the data directory.

Usage (from the bundle folder):

    python scripts/prepare_data.py [--data-dir DIR] [--output-dir data] [--small]

The data directory defaults to $MONAI_UNLEARN_DATA, then ../shared/data. No image is copied. ``--small`` keeps two GE
time points per split (all SIEMENS mosaics), for tests and quick tutorials.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from monai_unlearn.data import build_scanner_datalist

SMALL_GE_TIME_POINTS = 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="data directory (default: $MONAI_UNLEARN_DATA, then ../shared/data)")
    parser.add_argument(
        "--output-dir",
        default=str(Path(__file__).resolve().parents[1] / "data"),
        help="folder of datalist.json (default: the bundle's data/ folder)",
    )
    parser.add_argument("--small", action="store_true", help="keep two GE time points per split")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    build_scanner_datalist(
        args.output_dir, data_dir=args.data_dir, max_ge_time_points=SMALL_GE_TIME_POINTS if args.small else None
    )


if __name__ == "__main__":
    main()
