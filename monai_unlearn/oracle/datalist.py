# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""The retain part of a datalist, which the oracle overlay gives to the bundle's own training recipe."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from monai_unlearn.transforms import ForgetRule, MissingFieldError, as_rule, split_datalist
from monai_unlearn.transforms.rules import describe_rule_for_message

__all__ = ["retain_entries"]


def retain_entries(
    datalist: Sequence[Mapping[str, Any]],
    rule: ForgetRule | str,
    require_forget: bool = True,
    allow_missing_keys: bool = False,
) -> list[dict]:
    """Return the entries of ``datalist`` that ``rule`` does not select (shallow copies, in datalist order).

    Args:
        datalist: a list of sample dictionaries, as in a MONAI datalist.
        rule: the forget rule or its expression.
        require_forget: raise when the rule selects no entry. Set it to False for splits that may not contain the
            forgotten cases, such as a validation split under a rule that names training cases.
        allow_missing_keys: retain entries that lack a field the rule reads instead of raising.

    Raises:
        ValueError: when the rule selects every entry, or none while ``require_forget`` is True.
        MissingFieldError: when an entry lacks a field of the rule and ``allow_missing_keys`` is False.
    """
    if require_forget:
        return split_datalist(datalist, rule, allow_missing_keys=allow_missing_keys)[1]
    rule = as_rule(rule)
    retained = []
    for index, entry in enumerate(datalist):
        try:
            selected = rule.matches(entry)
        except MissingFieldError as error:
            if not allow_missing_keys:
                raise MissingFieldError(f"Datalist entry {index}: {error}") from error
            selected = False
        if not selected:
            retained.append(dict(entry))
    if datalist and not retained:
        raise ValueError(
            f"The forget rule {describe_rule_for_message(rule)} matches all {len(datalist)} datalist entries: nothing "
            "would be retained. Narrow the rule."
        )
    return retained
