# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Helpers for multi-process revisions under ``torch.distributed`` (one process per device, started by ``torchrun``).

In the flow transform -> engine -> inner search -> loss -> handlers, this module chooses which of a bundle's handlers
each process attaches to the unlearning trainer: every process loads the trained weights, and only rank 0 writes files
(the revised checkpoint, the report, the bundle metadata, audit manifests), so that no two processes write the same
file. A bundle overlay calls it by its dotted path, for example::

    "train#trainer#train_handlers": "$monai_unlearn.engines.handlers_for_rank(@unlearn#handlers)"
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ignite.distributed as idist
from monai.handlers import CheckpointLoader, LrScheduleHandler

__all__ = ["handlers_for_rank", "EVERY_RANK_HANDLERS"]

#: Handler types that change the training and so run in every process: loading the weights and stepping the
#: learning-rate schedule.
EVERY_RANK_HANDLERS: tuple[type, ...] = (CheckpointLoader, LrScheduleHandler)


def handlers_for_rank(
    handlers: Sequence[Any] | None, every_rank: Sequence[type] | None = None, rank: int | None = None
) -> list[Any]:
    """Return the handlers that this process attaches: all of them on rank 0, the ``every_rank`` types elsewhere.

    Handlers that only observe the run (savers, reports, metadata updaters, manifests, loggers) then run once, on
    rank 0. Those that change the training (``CheckpointLoader``, ``LrScheduleHandler`` by default) run in every
    process, so that all processes train the same weights.

    Args:
        handlers: the bundle's trainer handlers, in attachment order; None gives an empty list.
        every_rank: handler types kept on every rank; None uses :data:`EVERY_RANK_HANDLERS`.
        rank: the process rank; None reads it from ``ignite.distributed`` (0 outside ``torch.distributed``).

    Raises:
        TypeError: when ``every_rank`` contains something other than a class.
    """
    kept_types = tuple(EVERY_RANK_HANDLERS if every_rank is None else every_rank)
    for item in kept_types:
        if not isinstance(item, type):
            raise TypeError(f"every_rank must contain handler classes, got {item!r} of type {type(item).__name__}.")
    handlers = list(handlers or [])
    if (idist.get_rank() if rank is None else rank) == 0:
        return handlers
    return [handler for handler in handlers if isinstance(handler, kept_types)]
