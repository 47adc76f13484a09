# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""A numeric forget rule whose threshold is a percentile of a datalist field, for anatomical outliers.

"Forget the cases whose hippocampal volume is above the 90th percentile" needs the threshold in the units of the
field. :class:`PercentileCompare` computes it once from a datalist (normally the training split) and then behaves
as :class:`~monai_unlearn.transforms.FieldCompare`, so :class:`~monai_unlearn.transforms.TagForgetd` and
:func:`~monai_unlearn.transforms.split_datalist` apply it like any other rule, to training and held-out cases alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .rules import FieldCompare, _scalar

__all__ = ["PercentileCompare"]


class PercentileCompare(FieldCompare):
    """Forget samples whose numeric field ``key`` satisfies ``value <op> percentile(datalist values, q)``.

    Args:
        key: the numeric datalist field, for example ``"hippocampus_volume_ml"``.
        op: ``<``, ``<=``, ``>``, ``>=``, ``==`` or ``!=``.
        percentile: ``q`` in [0, 100], computed with ``numpy.percentile`` (linear interpolation).
        datalist: the entries the percentile is computed over, for example the training split.

    Raises:
        ValueError: for a percentile outside [0, 100], an empty datalist, or an entry whose field is missing,
            non-numeric or NaN.
    """

    def __init__(self, key: str, op: str, percentile: float, datalist: Sequence[Mapping[str, Any]]) -> None:
        if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 <= percentile <= 100:
            raise ValueError(f"Invalid percentile {percentile!r}: it must be a number in [0, 100].")
        if not datalist:
            raise ValueError(f"PercentileCompare({key!r}) got an empty datalist; pass the training entries.")
        values = []
        for index, entry in enumerate(datalist):
            if key not in entry:
                raise ValueError(
                    f"Datalist entry {index} has no field {key!r}; rebuild the datalist with a builder that writes it."
                )
            try:
                value = float(_scalar(entry[key]))
            except (TypeError, ValueError) as error:
                raise ValueError(f"Field {key!r} of datalist entry {index} is not numeric: {entry[key]!r}.") from error
            if math.isnan(value):
                raise ValueError(f"Field {key!r} of datalist entry {index} is NaN; fix or drop that entry.")
            values.append(value)
        self.percentile = float(percentile)
        self.reference_count = len(values)
        super().__init__(key, op, float(np.percentile(values, percentile)))

    def describe(self) -> str:
        return (
            f"{self.key} {self.op} {self.threshold:.6g} "
            f"(percentile {self.percentile:g} of {self.reference_count} reference entries)"
        )
