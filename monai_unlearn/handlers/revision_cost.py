# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Handler that measures the wall time and peak memory of the passes of a revision, without the evaluations.

Evaluation handlers run at ``Events.STARTED``, ``Events.EPOCH_COMPLETED`` and ``Events.COMPLETED``; their work is not
part of the revision's cost. This handler therefore counts, for each pass, ignite's epoch time as it is when
``EPOCH_COMPLETED`` fires (``engine.state.times["EPOCH_COMPLETED"]``). That time covers the ``EPOCH_STARTED``
handlers (among them the method's setup), the data loading and every outer step with its iteration handlers, but none
of the ``EPOCH_COMPLETED`` handlers. A pass that ends without ``EPOCH_COMPLETED`` is counted from this handler's own
events instead: a method that takes no optimizer step ends the run at its first ``EPOCH_STARTED``. Peak memory (see
:mod:`monai_unlearn.metrics.cost`) is reset when each pass starts and sampled after each iteration.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ignite.engine import Engine, Events

from monai_unlearn.metrics.cost import CostMonitor, RunCost

__all__ = ["RevisionCostRecorder"]


class RevisionCostRecorder:
    """Measure the cost of the passes of a run: wall time and peak memory (host RSS and CUDA).

    The result is in :attr:`cost` after each pass and in ``engine.state.revision_cost`` (a dict, see
    :meth:`~monai_unlearn.metrics.RunCost.to_dict`). Attach it after the handlers that evaluate at ``STARTED``: the
    time between its ``STARTED`` and its first ``EPOCH_STARTED`` is counted when the first pass ends early.

    Note:
        Work a method does in its ``on_pass_completed`` hook (at ``EPOCH_COMPLETED``) or ``finalize`` hook (at
        ``COMPLETED``) is not counted; the boundary methods do no work there.

    Args:
        name: name of the handler's logger.
    """

    def __init__(self, name: str = "RevisionCostRecorder") -> None:
        self.logger = logging.getLogger(name)
        self.monitor: CostMonitor | None = None
        self.seconds = 0.0
        self.passes = 0
        self.cost: RunCost | None = None
        self._started_at: float | None = None
        self._pass_started_at: float | None = None
        self._pass_open = False
        self._startup_seconds = 0.0
        self._last_iteration_at: float | None = None

    def attach(self, engine: Engine) -> None:
        """Register the measurement on ``engine``'s run, pass and iteration events."""
        engine.add_event_handler(Events.STARTED, self.run_started)
        engine.add_event_handler(Events.EPOCH_STARTED, self.pass_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.pass_completed)
        engine.add_event_handler(Events.COMPLETED, self.run_completed)

    def run_started(self, engine: Engine) -> None:
        """Note the end of the STARTED handlers attached before this one."""
        self.monitor = CostMonitor(getattr(engine.state, "device", None))
        self._started_at = time.perf_counter()

    def pass_started(self, engine: Engine) -> None:
        """Reset the memory peaks for the pass and note its start."""
        if self.monitor is None:
            self.run_started(engine)
        assert self.monitor is not None and self._started_at is not None
        now = time.perf_counter()
        # The trainer's own EPOCH_STARTED handlers ran just before this one: on the first pass they set up the method.
        first_pass = self._pass_started_at is None
        self._startup_seconds = now - self._started_at if first_pass else 0.0
        self._pass_started_at = now
        self._pass_open = True
        self._last_iteration_at = None
        self.monitor.reset_peaks()
        self.monitor.sample()

    def iteration_completed(self, engine: Engine) -> None:
        """Sample the memory peaks."""
        if self.monitor is not None:
            self.monitor.sample()
            self._last_iteration_at = time.perf_counter()

    def pass_completed(self, engine: Engine) -> None:
        """Add the pass's time and publish the cost so far."""
        if self.monitor is None:
            return
        self.seconds += float(engine.state.times.get(Events.EPOCH_COMPLETED.name) or 0.0)
        self.passes += 1
        self._pass_open = False
        self._publish(engine)

    def run_completed(self, engine: Engine) -> None:
        """Count a pass that ended without EPOCH_COMPLETED (the run was terminated), then publish the cost."""
        if self.monitor is None or self._pass_started_at is None or not self._pass_open:
            return
        iterations = 0.0 if self._last_iteration_at is None else self._last_iteration_at - self._pass_started_at
        self.seconds += self._startup_seconds + iterations
        self.passes += 1
        self._pass_open = False
        self.monitor.sample()
        self._publish(engine)

    def _publish(self, engine: Engine) -> None:
        assert self.monitor is not None
        self.cost = self.monitor.result(self.seconds)
        engine.state.revision_cost = {**self.cost.to_dict(), "passes": self.passes}

    def state_dict(self) -> dict[str, Any]:
        """Return the time and pass count measured so far, so that a resumed run adds to them."""
        return {"seconds": self.seconds, "passes": self.passes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the values returned by :meth:`state_dict`."""
        self.seconds = float(state.get("seconds", 0.0))
        self.passes = int(state.get("passes", 0))
