"""The registry polled for a serving process: each tenant's moved `champion` swapped in and
the experiments' arms loaded, every `serving.model_poll_seconds`, at once when a reload was
asked of any serving process of the home (`sluice.reloads`), and by a reload itself
(`POST /admin/reload`, an experiment created or stopped through the admin routes).
One poll at a time (the poller's and a reload's), so the last swap is the latest poll's."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from sluice.experiments import Experiment, Experiments
from sluice.reloads import CHECK_SECONDS, Reloads, WorkersBehindError
from sluice.serve.arms import ArmModels
from sluice.serve.champions import Champions
from sluice.serve.model import LoadedModel
from sluice.store import StoreError


class RegistryPolls:
    def __init__(self, home: Path, champions: Champions, experiments: Experiments,
                 arms: ArmModels, swap: Callable[[str, LoadedModel], None],
                 wait_seconds: float):
        self.reloads = Reloads(home)
        self.wait_seconds = wait_seconds  # serving.reload_wait_seconds
        self._champions, self._experiments, self._arms = champions, experiments, arms
        self._swap = swap
        self._one_at_a_time = threading.Lock()

    def poll(self, fresh: bool = False) -> None:
        """Swap in each moved champion, load experiment arms. `fresh` (a reload): the
        experiments as they are now, not the copy answers read, up to a second old
        (`Experiments.all`)."""
        with self._one_at_a_time:
            for tenant in self._champions.tenants():
                model = self._champions.poll(tenant)
                if model is not None:
                    self._swap(tenant, model)
                    self._champions.served(tenant, model)
            now = int(time.time() * 1000)
            self._arms.refresh([e for e in self._running(fresh).values()
                                if e.running(now) or e.start_ms > now])

    def _running(self, fresh: bool) -> dict[str, Experiment]:
        if fresh:
            try:
                return self._experiments.all(fresh=True)
            except StoreError:  # never read whole: answers go on outside, said once there
                pass
        return self._experiments.all()

    def reload(self, what: str = "the registry's models") -> None:
        """`POST /admin/reload`, and an experiment created or stopped: every serving process
        of the home polls the registry, and reads the experiments, now; returns once each of
        this host has, else WorkersBehindError (`what`: what they had not loaded) names those
        that had not within `wait_seconds`."""
        generation = self.reloads.ask()
        self.poll(fresh=True)
        self.reloads.done(generation)
        behind = self.reloads.wait(generation, self.wait_seconds)
        if behind:
            raise WorkersBehindError(behind, self.wait_seconds, what)

    # --- experiments changed through the admin routes -----------------------------------------
    def create_experiment(self, exp: Experiment, model_exists: Callable[[str], bool],
                          templates: Iterable[str]) -> Experiment:
        """Store `exp` (ExperimentError names the field at fault), then `reload`: every
        serving process of this host has loaded its arms and answers within it when this
        returns, else WorkersBehindError names those that had not in time (it is stored all
        the same: they take it up when they get to the reload, or at their next poll)."""
        self._experiments.create(exp, model_exists, templates)
        self.reload(f"experiment {exp.id!r} (it is saved: do not create it again)")
        return exp

    def stop_experiment(self, experiment_id: str) -> Experiment:
        """Stop it (NotFoundError for none), then `reload` as `create_experiment` does: no
        serving process of this host answers within it when this returns."""
        exp = self._experiments.stop(experiment_id)
        self.reload(f"the stop of experiment {experiment_id!r} (it is saved)")
        return exp

    def loop(self, stop: threading.Event, every: float) -> None:
        """The registry every `every` seconds, and at once when a reload was asked of any
        serving process of the home (looked for every CHECK_SECONDS)."""
        due = time.monotonic() + every
        while not stop.wait(min(CHECK_SECONDS, every)):
            asked = self.reloads.asked()
            if asked > self.reloads.done_at or time.monotonic() >= due:
                self.poll(fresh=asked > self.reloads.done_at)
                due = time.monotonic() + every
                if asked > self.reloads.done_at:
                    self.reloads.done(asked)
