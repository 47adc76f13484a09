# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Dictionary transform that writes an integer forget flag per sample from a forget rule.

It is the first step of the flow transform -> engine -> inner search -> loss -> handlers: put it in the bundle's
preprocessing before collation and before any random crop (the flag is then copied to every crop), and the
unlearning trainer splits each batch by the flag without knowing how it was decided.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.transforms import MapTransform

from .rules import ForgetRule, MissingFieldError, as_rule, split_datalist

__all__ = ["TagForgetd", "TagForgetD", "TagForgetDict"]

logger = logging.getLogger(__name__)


class TagForgetd(MapTransform):
    """Write ``data[forget_key] = 1`` for samples the rule selects and ``0`` for the others.

    Args:
        rule: a :class:`~monai_unlearn.transforms.ForgetRule` or an expression for
            :func:`~monai_unlearn.transforms.parse_rule`, such as ``"label in {1}"``, ``"site == 'B'"``,
            ``"hippocampus_volume_ml > 4.2"`` or ``"Manufacturer == 'SIEMENS'"``.
        forget_key: key of the flag written into the dictionary.
        allow_missing_keys: when False (default) a sample without a field the rule reads raises ``KeyError``; when
            True it is retained (flag 0), counted in :attr:`missing_count` and logged once, so that samples without
            metadata are never dropped silently.
        datalist: optional datalist to check the rule against at construction: a rule that matches no entry, or
            every entry, raises ``ValueError`` before any training starts.

    Raises:
        MissingFieldError: (a ``KeyError``) at call time, for a missing field when ``allow_missing_keys`` is False.
        ValueError: at construction, when ``datalist`` is given and the rule matches none or all of it.
    """

    def __init__(
        self,
        rule: ForgetRule | str,
        forget_key: str = "forget",
        allow_missing_keys: bool = False,
        datalist: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.rule = as_rule(rule)
        super().__init__(keys=self.rule.fields(), allow_missing_keys=allow_missing_keys)
        self.forget_key = forget_key
        self.missing_count = 0
        if datalist is not None:
            split_datalist(datalist, self.rule, allow_missing_keys=allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        try:
            selected = self.rule.matches(d)
        except MissingFieldError:
            if not self.allow_missing_keys:
                raise
            self.missing_count += 1
            if self.missing_count == 1:
                logger.warning(
                    "A sample lacks a field of the forget rule '%s' and is retained; "
                    "further such samples are counted in TagForgetd.missing_count.",
                    self.rule.describe(),
                )
            selected = False
        d[self.forget_key] = int(selected)
        return d


TagForgetD = TagForgetDict = TagForgetd
