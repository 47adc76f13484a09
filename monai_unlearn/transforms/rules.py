# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Forget rules: predicates on a sample's data dictionary that decide whether the sample is forgotten.

A rule reads datalist fields (label, site, case ID, a numeric measure, DICOM attributes read into the dictionary)
and returns True for forget samples. Rules are plain objects, so a bundle config builds them with ``_target_``, and
:func:`parse_rule` builds them from short expressions such as ``"label in {1}"`` or ``"Manufacturer == 'SIEMENS'"``.
:class:`~monai_unlearn.transforms.TagForgetd` applies a rule to every sample; :func:`split_datalist` applies it to a
whole datalist.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import math
import operator
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ForgetRule",
    "LabelIn",
    "FieldEquals",
    "FieldIn",
    "FieldMatches",
    "FieldCompare",
    "CaseIdIn",
    "AllOf",
    "AnyOf",
    "Not",
    "MissingFieldError",
    "parse_rule",
    "as_rule",
    "split_datalist",
    "COMPARISONS",
]

COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


class MissingFieldError(KeyError):
    """Raised when a rule reads a field that a sample does not have."""

    def __str__(self) -> str:  # KeyError quotes its message; show it as written
        return str(self.args[0]) if self.args else ""


def _scalar(value: Any) -> Any:
    """Turn 0-d arrays/tensors, one-element sequences and one-hot vectors into a Python scalar."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.size == 1:
            return value.reshape(-1)[0].item()
        flat = value.reshape(-1)
        if flat.ndim == 1 and np.isin(flat, (0, 1)).all() and flat.sum() == 1:
            return int(flat.argmax())
        raise ValueError(f"Expected a scalar or one-hot value, got an array of shape {value.shape}.")
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return _scalar(value[0])
    if isinstance(value, np.generic):
        return value.item()
    return value


def _normalise_text(value: Any, case_sensitive: bool) -> Any:
    """Strip padding and, unless case-sensitive, fold case; multi-valued fields become tuples of such strings."""
    if isinstance(value, str):
        text = value.strip().strip("\x00").strip()
        return text if case_sensitive else text.casefold()
    if _is_multi_value(value) and len(value) and all(isinstance(v, str) for v in value):
        return tuple(_normalise_text(v, case_sensitive) for v in value)
    return value


def _is_multi_value(value: Any) -> bool:
    """Return True for list-like values, including pydicom MultiValue, but not for text, arrays or tensors."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


class ForgetRule:
    """Base class of forget rules. Calling a rule on a sample dictionary returns True for forget samples."""

    def fields(self) -> list[str]:
        """Return the dictionary keys that the rule reads."""
        raise NotImplementedError

    def matches(self, data: Mapping[str, Any]) -> bool:
        """Return True when ``data`` belongs to the forget set.

        Raises:
            MissingFieldError: when ``data`` lacks a field the rule reads.
        """
        raise NotImplementedError

    def describe(self) -> str:
        """Return the rule as an expression, for logs, reports and audit manifests."""
        raise NotImplementedError

    def __call__(self, data: Mapping[str, Any]) -> bool:
        return self.matches(data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    @staticmethod
    def _get(data: Mapping[str, Any], key: str) -> Any:
        if key not in data:
            present = ", ".join(sorted(map(str, data))[:20])
            raise MissingFieldError(
                f"The forget rule reads field {key!r}, which this sample does not have (its fields: {present}). "
                f"Add {key!r} to every datalist entry, or use allow_missing_keys=True to keep such samples."
            )
        return data[key]


class FieldEquals(ForgetRule):
    """Forget samples whose ``key`` equals ``value``.

    Strings are compared after stripping padding and, unless ``case_sensitive``, case-folded, which suits DICOM
    attributes such as ``Manufacturer`` (``"SIEMENS "`` equals ``"Siemens"``). A multi-valued field matches when any
    of its values equals ``value``.
    """

    def __init__(self, key: str, value: Any, case_sensitive: bool = False) -> None:
        self.key = key
        self.value = value
        self.case_sensitive = case_sensitive

    def fields(self) -> list[str]:
        return [self.key]

    def matches(self, data: Mapping[str, Any]) -> bool:
        observed = _normalise_text(_scalar_or_text(self._get(data, self.key)), self.case_sensitive)
        expected = _normalise_text(self.value, self.case_sensitive)
        if isinstance(observed, tuple):
            return expected in observed
        return bool(observed == expected)

    def describe(self) -> str:
        return f"{self.key} == {self.value!r}"


class FieldIn(ForgetRule):
    """Forget samples whose ``key`` is one of ``values`` (strings normalised as in :class:`FieldEquals`)."""

    def __init__(self, key: str, values: Iterable[Any], case_sensitive: bool = False) -> None:
        self.key = key
        self.values = list(values)
        if not self.values:
            raise ValueError(f"FieldIn({key!r}) got an empty set of values; the rule would match nothing.")
        self.case_sensitive = case_sensitive
        self._expected = {_normalise_text(v, case_sensitive) for v in self.values}

    def fields(self) -> list[str]:
        return [self.key]

    def matches(self, data: Mapping[str, Any]) -> bool:
        observed = _normalise_text(_scalar_or_text(self._get(data, self.key)), self.case_sensitive)
        if isinstance(observed, tuple):
            return any(v in self._expected for v in observed)
        return observed in self._expected

    def describe(self) -> str:
        return f"{self.key} in {sorted(self.values, key=str)!r}"


class LabelIn(FieldIn):
    """Forget samples whose class label is one of ``values`` (class forgetting).

    The label may be an integer, a 0-d or one-element array or tensor, or a one-hot vector.
    """

    def __init__(self, values: Iterable[int], key: str = "label") -> None:
        values = list(values)
        for value in values:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"LabelIn expects integer class indices, got {value!r}.")
        super().__init__(key=key, values=[int(v) for v in values], case_sensitive=True)

    def matches(self, data: Mapping[str, Any]) -> bool:
        label = _scalar(self._get(data, self.key))
        try:
            integral = isinstance(label, (int, float)) and float(label).is_integer()
        except (TypeError, ValueError, OverflowError):
            integral = False
        if not integral:
            raise ValueError(f"LabelIn needs an integer class label in {self.key!r}, got {label!r}.")
        return int(label) in self._expected


class FieldMatches(ForgetRule):
    """Forget samples whose string field ``key`` matches the regular expression ``pattern`` (``re.search``).

    Matching ignores case unless ``case_sensitive``; a multi-valued field matches when any value matches.
    """

    def __init__(self, key: str, pattern: str, case_sensitive: bool = False) -> None:
        self.key = key
        self.pattern = pattern
        self.case_sensitive = case_sensitive
        try:
            self._regex = re.compile(pattern, 0 if case_sensitive else re.IGNORECASE)
        except re.error as error:
            raise ValueError(f"Invalid regular expression {pattern!r} for field {key!r}: {error}.") from error

    def fields(self) -> list[str]:
        return [self.key]

    def matches(self, data: Mapping[str, Any]) -> bool:
        observed = _scalar_or_text(self._get(data, self.key))
        values = observed if isinstance(observed, (list, tuple)) else [observed]
        return any(self._regex.search(str(v).strip()) is not None for v in values)

    def describe(self) -> str:
        return f"matches({self.key}, {self.pattern!r})"


class FieldCompare(ForgetRule):
    """Forget samples whose numeric field ``key`` satisfies ``value_of_key <op> threshold``.

    ``op`` is one of ``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``. A non-numeric or NaN field raises ``ValueError``
    instead of silently comparing as False.
    """

    def __init__(self, key: str, op: str, threshold: float) -> None:
        if op not in COMPARISONS:
            raise ValueError(f"Invalid comparison {op!r}: expected one of {list(COMPARISONS)}.")
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not math.isfinite(threshold):
            raise ValueError(f"FieldCompare needs a finite numeric threshold, got {threshold!r}.")
        self.key = key
        self.op = op
        self.threshold = threshold

    def fields(self) -> list[str]:
        return [self.key]

    def matches(self, data: Mapping[str, Any]) -> bool:
        raw = _scalar(self._get(data, self.key))
        try:
            value = float(raw)
        except (TypeError, ValueError) as error:
            raise ValueError(f"Field {self.key!r} must be numeric for '{self.describe()}', got {raw!r}.") from error
        if math.isnan(value):
            raise ValueError(f"Field {self.key!r} is NaN; '{self.describe()}' cannot decide. Fix or drop that entry.")
        return bool(COMPARISONS[self.op](value, self.threshold))

    def describe(self) -> str:
        return f"{self.key} {self.op} {self.threshold!r}"


class CaseIdIn(ForgetRule):
    """Forget samples whose case ID is in a list, for example a patient's deletion request.

    Args:
        ids: the case IDs, or a path to a file with one ID per line (``.txt``), a JSON list (``.json``), or a CSV
            whose first column holds the IDs (``.csv``, a header line is skipped when it equals ``id_column``).
        key: the datalist field holding the case ID.
        id_column: header name skipped in CSV files.

    Raises:
        ValueError: when the list is empty. IDs are compared as stripped strings.
    """

    def __init__(self, ids: Iterable[Any] | str | os.PathLike, key: str = "case_id", id_column: str = "case_id") -> None:
        if isinstance(ids, (str, os.PathLike)):
            self.source = str(ids)
            ids = self._read_ids(Path(ids), id_column)
        else:
            self.source = None
        self.key = key
        self.ids = {str(i).strip() for i in ids if str(i).strip()}
        if not self.ids:
            raise ValueError(f"CaseIdIn got no case IDs (source: {self.source or 'list'}); the rule would match nothing.")

    @staticmethod
    def _read_ids(path: Path, id_column: str) -> list[str]:
        if not path.is_file():
            raise FileNotFoundError(f"Case ID list {str(path)!r} not found; pass a list of IDs or an existing file.")
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix.lower() == ".json":
            loaded = json.loads(text)
            if not isinstance(loaded, list):
                raise ValueError(f"{str(path)!r} must contain a JSON list of case IDs, got {type(loaded).__name__}.")
            return [str(v) for v in loaded]
        if path.suffix.lower() == ".csv":
            rows = [row for row in csv.reader(io.StringIO(text)) if row and row[0].strip()]
            ids = [row[0].strip() for row in rows if not row[0].lstrip().startswith("#")]
            if ids and ids[0] == id_column:
                ids = ids[1:]
            return ids
        return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]

    def fields(self) -> list[str]:
        return [self.key]

    def matches(self, data: Mapping[str, Any]) -> bool:
        return str(_scalar_or_text(self._get(data, self.key))).strip() in self.ids

    def describe(self) -> str:
        # The IDs themselves are patient identifiers: describe the rule by count only.
        return f"{self.key} in <{len(self.ids)} case IDs>"


class AllOf(ForgetRule):
    """Forget samples that every one of ``rules`` selects."""

    def __init__(self, rules: Sequence[ForgetRule | str]) -> None:
        if not rules:
            raise ValueError("AllOf needs at least one rule.")
        self.rules = [as_rule(r) for r in rules]

    def fields(self) -> list[str]:
        return sorted({f for r in self.rules for f in r.fields()})

    def matches(self, data: Mapping[str, Any]) -> bool:
        return all(r.matches(data) for r in self.rules)

    def describe(self) -> str:
        return "(" + " and ".join(r.describe() for r in self.rules) + ")"


class AnyOf(AllOf):
    """Forget samples that at least one of ``rules`` selects.

    A branch whose field the sample lacks does not stop the others: the sample is forgotten when another branch
    selects it (a listed case ID still counts when the sample has no ``site``). Only when no branch selects it and
    some branch lacked its field does :class:`MissingFieldError` propagate.
    """

    def matches(self, data: Mapping[str, Any]) -> bool:
        missing: MissingFieldError | None = None
        for rule in self.rules:
            try:
                if rule.matches(data):
                    return True
            except MissingFieldError as error:
                missing = missing or error
        if missing is not None:
            raise missing
        return False

    def describe(self) -> str:
        return "(" + " or ".join(r.describe() for r in self.rules) + ")"


class Not(ForgetRule):
    """Forget samples that ``rule`` does not select."""

    def __init__(self, rule: ForgetRule | str) -> None:
        self.rule = as_rule(rule)

    def fields(self) -> list[str]:
        return self.rule.fields()

    def matches(self, data: Mapping[str, Any]) -> bool:
        return not self.rule.matches(data)

    def describe(self) -> str:
        return f"not {self.rule.describe()}"


def _scalar_or_text(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if _is_multi_value(value) and len(value) != 1:
        return tuple(value)
    if _is_multi_value(value):
        return _scalar_or_text(value[0])
    return _scalar(value)


_AST_COMPARISONS = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}


def _literal(node: ast.AST, expression: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError as error:
        raise ValueError(
            f"Invalid forget rule {expression!r}: the right-hand side must be a literal (number, string, set or list)."
        ) from error


def _field_name(node: ast.AST, expression: str) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    raise ValueError(f"Invalid forget rule {expression!r}: the left-hand side must be a field name.")


def _build(node: ast.AST, expression: str) -> ForgetRule:
    if isinstance(node, ast.BoolOp):
        parts = [_build(v, expression) for v in node.values]
        return AllOf(parts) if isinstance(node.op, ast.And) else AnyOf(parts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return Not(_build(node.operand, expression))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "matches":
        if len(node.args) != 2 or node.keywords:
            raise ValueError(f"Invalid forget rule {expression!r}: use matches(field, 'regular expression').")
        pattern = _literal(node.args[1], expression)
        if not isinstance(pattern, str):
            raise ValueError(f"Invalid forget rule {expression!r}: the pattern of matches() must be a string.")
        return FieldMatches(_field_name(node.args[0], expression), pattern)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        key = _field_name(node.left, expression)
        value = _literal(node.comparators[0], expression)
        op = node.ops[0]
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(value, (set, frozenset, list, tuple)):
                raise ValueError(f"Invalid forget rule {expression!r}: 'in' needs a set or list, got {value!r}.")
            rule: ForgetRule = LabelIn(value) if key == "label" and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ) else FieldIn(key, value)
            return Not(rule) if isinstance(op, ast.NotIn) else rule
        symbol = _AST_COMPARISONS.get(type(op))
        if symbol is None:
            raise ValueError(f"Invalid forget rule {expression!r}: unsupported operator {type(op).__name__}.")
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if symbol in ("==", "!=") and not is_number:
            equals = FieldEquals(key, value)
            return equals if symbol == "==" else Not(equals)
        if is_number:
            return FieldCompare(key, symbol, value)
        raise ValueError(f"Invalid forget rule {expression!r}: '{symbol}' needs a number, got {value!r}.")
    raise ValueError(
        f"Invalid forget rule {expression!r}. Examples: \"label in {{1}}\", \"site == 'B'\", "
        "\"hippocampus_volume_ml > 4.2\", \"matches(ManufacturerModelName, 'skyra|prisma')\", "
        "combined with and, or, not."
    )


def parse_rule(expression: str) -> ForgetRule:
    """Build a rule from an expression over datalist fields, without evaluating any code.

    Supported forms: ``field == value``, ``field != value``, ``field in {a, b}``, ``field not in [a, b]``,
    ``field <op> number`` with ``<, <=, >, >=``, ``matches(field, 'regex')``, combined with ``and``, ``or``,
    ``not`` and parentheses. ``label in {...}`` with integers builds a :class:`LabelIn` rule. Field names that are
    not Python identifiers can be quoted: ``'Patient Age' > 60``.

    Raises:
        ValueError: when the expression is not of these forms; the message shows examples.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError(f"Invalid forget rule {expression!r}: expected a non-empty expression such as \"label in {{1}}\".")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as error:
        hint = " Compare with '==', not '='." if re.search(r"(?<![=!<>])=(?!=)", expression) else ""
        raise ValueError(f"Invalid forget rule {expression!r}: {error.msg}.{hint}") from error
    return _build(tree.body, expression)


def as_rule(rule: ForgetRule | str | Callable[[Mapping[str, Any]], bool]) -> ForgetRule:
    """Return ``rule`` as a :class:`ForgetRule`: parse strings, keep rules, reject anything else."""
    if isinstance(rule, ForgetRule):
        return rule
    if isinstance(rule, str):
        return parse_rule(rule)
    raise TypeError(f"Expected a ForgetRule or a rule expression string, got {type(rule).__name__}.")


#: Fields whose values identify a person, a study or a file. Messages and records show how many values such a field
#: has, never the values.
IDENTIFYING_FIELD = re.compile(
    r"(^|_)(ids?|uids?)$|patient|subject|case|accession|mrn|birth|uid$|instance|filename|file$|path$|^image$",
    re.IGNORECASE,
)


def describe_present_values(datalist: Sequence[Mapping[str, Any]], fields: Sequence[str], limit: int = 10) -> str:
    """Describe the values that ``fields`` take in ``datalist``, for an error message about a rule that selects nothing.

    At most ``limit`` values are listed per field. Values of identifying fields (see :data:`IDENTIFYING_FIELD`) are
    only counted, so that no identifier reaches a log.
    """
    parts = []
    for field in fields:
        values = {repr(entry[field]) for entry in datalist if isinstance(entry, Mapping) and field in entry}
        if not values:
            parts.append(f"{field}: no entry has it")
        elif IDENTIFYING_FIELD.search(field):
            parts.append(f"{field}: {len(values)} distinct values (not shown, they identify people or files)")
        else:
            shown = sorted(values)[:limit]
            more = f" and {len(values) - limit} more" if len(values) > limit else ""
            parts.append(f"{field}: {', '.join(shown)}{more}")
    return "Values present: " + "; ".join(parts) + "." if parts else ""


def describe_rule_for_message(rule: ForgetRule) -> str:
    """Quote a rule for an error message, or name only its fields when one of them identifies people or files."""
    fields = rule.fields()
    if any(IDENTIFYING_FIELD.search(field) for field in fields):
        return f"on {', '.join(fields)} (values not shown)"
    return f'"{rule.describe()}"'


def split_datalist(
    datalist: Sequence[Mapping[str, Any]], rule: ForgetRule | str, allow_missing_keys: bool = False
) -> tuple[list[dict], list[dict]]:
    """Split a datalist into its forget and retain entries by ``rule``.

    Args:
        datalist: list of sample dictionaries, as in a MONAI datalist.
        rule: the forget rule or an expression for :func:`parse_rule`.
        allow_missing_keys: when True, entries without a field the rule reads are retained (and counted in the
            error message of an empty split); when False they raise.

    Returns:
        ``(forget, retain)`` lists of shallow copies of the entries, in datalist order.

    Raises:
        ValueError: when the rule matches no entry, or every entry (the forget set would be the whole training set).
        MissingFieldError: when an entry lacks a field the rule reads and ``allow_missing_keys`` is False.
    """
    rule = as_rule(rule)
    forget: list[dict] = []
    retain: list[dict] = []
    missing = 0
    for index, entry in enumerate(datalist):
        try:
            selected = rule.matches(entry)
        except MissingFieldError as error:
            if not allow_missing_keys:
                raise MissingFieldError(f"Datalist entry {index}: {error}") from error
            missing += 1
            selected = False
        (forget if selected else retain).append(dict(entry))
    if not forget:
        extra = f" ({missing} entries lack the fields {rule.fields()})" if missing else ""
        described = describe_rule_for_message(rule)
        raise ValueError(
            f"The forget rule {described} matches none of the {len(datalist)} datalist entries{extra}; check the field "
            f"names and values. {describe_present_values(datalist, rule.fields())}"
        )
    if not retain:
        raise ValueError(
            f"The forget rule {describe_rule_for_message(rule)} matches all {len(datalist)} datalist entries: nothing would be "
            "retained. Narrow the rule, or retrain from scratch instead of unlearning."
        )
    return forget, retain
