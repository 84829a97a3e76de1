"""What a training run does when: its phases, learning rates, time budget and weight average.

Everything here is plain arithmetic on the settings and on measured times, with no files and no
model building, so that each piece is tested by itself.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Phase:
    """Epochs `begin + 1 .. end` trained at one batch size, the backbone frozen or not."""

    name: str
    begin: int
    end: int
    batch_size: int

    @property
    def frozen(self) -> bool:
        return self.name == "frozen"


def plan_phases(config: dict[str, Any], start: int, epochs: int | None = None) -> list[Phase]:
    """The phases left from epoch `start` (0-based, the next to train) to `epochs` (default the
    config's): the original's frozen phase while `freeze_train` and before `freeze_epoch`, then
    the unfrozen one."""
    epochs = config["epochs"] if epochs is None else epochs
    start = max(start, config["init_epoch"])
    phases = []
    if config["freeze_train"] and start < config["freeze_epoch"]:
        end = min(config["freeze_epoch"], epochs)
        phases.append(Phase("frozen", start, end, config["freeze_batch_size"]))
        start = end
    if start < epochs:
        phases.append(Phase("unfrozen", start, epochs, config["batch_size"]))
    return phases


def frozen_share(config: dict[str, Any]) -> float:
    """The fraction of a timed run's training time spent with the backbone frozen: the share of
    the epochs the untimed schedule freezes (`freeze_epoch / epochs`, half with the original's
    50 of 100), 0 without `freeze_train`."""
    if not config["freeze_train"]:
        return 0.0
    return min(max(config["freeze_epoch"] / max(config["epochs"], 1), 0.0), 1.0)


def lr_at(epoch: int, lr: float, min_lr: float, total: int, schedule: str = "cos") -> float:
    """The original's per-epoch schedule: YOLOX warm-up cosine (quadratic warm-up over up to 3
    epochs from 0.1 x lr, cosine down to min_lr, min_lr for the last up-to-15 epochs) or steps
    (10 steps from lr to min_lr)."""
    if schedule == "cos":
        warmup = min(max(0.05 * total, 1), 3)
        warmup_start = max(0.1 * lr, 1e-6)
        flat = min(max(0.05 * total, 1), 15)
        if epoch <= warmup:
            return (lr - warmup_start) * (epoch / warmup) ** 2 + warmup_start
        if epoch >= total - flat:
            return min_lr
        progress = (epoch - warmup) / (total - warmup - flat)
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
    steps = 10
    decay = (min_lr / lr) ** (1 / (steps - 1))
    return lr * decay ** (epoch // (total / steps))


# The fractions of a timed run that warm up and that stay at min_lr: the original's 5% of the
# epochs, without its epoch-count clamps, which mean nothing for a budget.
WARMUP_FRACTION = 0.05
FLAT_FRACTION = 0.05


def lr_at_progress(progress: float, lr: float, min_lr: float) -> float:
    """The warm-up cosine of `lr_at` as a function of the run's progress in [0, 1] (a timed
    run's fraction of its training time): quadratic warm-up from 0.1 x lr over the first 5%,
    cosine to min_lr, min_lr over the last 5%."""
    progress = min(max(progress, 0.0), 1.0)
    start = max(0.1 * lr, 1e-6)
    if progress <= WARMUP_FRACTION:
        return (lr - start) * (progress / WARMUP_FRACTION) ** 2 + start
    if progress >= 1 - FLAT_FRACTION:
        return min_lr
    middle = (progress - WARMUP_FRACTION) / (1 - WARMUP_FRACTION - FLAT_FRACTION)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * middle))


def monotonic() -> float:
    """The clock of timed runs (`time.monotonic`); a function of its own so that a test can run
    a budget on a clock it controls."""
    return time.monotonic()


class TimeBudget:
    """The clock of a timed run.

    `minutes` is the whole run's budget, from `started` (the start of `train`; a resumed run
    brings the wall time it `used` before and the seconds it `trained`). Training stops at the
    deadline, which keeps back `reserve` seconds for what the end will take (the final
    checkpoint and evaluation; the trainer re-estimates it as it measures them). Only training
    time counts towards the schedule's progress: `resume()` starts the training clock and
    `pause()` stops it, around checkpoints and validation.
    """

    def __init__(
        self,
        minutes: float,
        started: float | None = None,
        used: float = 0.0,
        trained: float = 0.0,
        clock=None,
    ):
        self.clock = clock = monotonic if clock is None else clock
        self.budget = 60.0 * minutes
        self.started = clock() if started is None else started
        self.used = float(used)  # wall seconds of earlier sessions of the run (resumed)
        self.trained = float(trained)  # seconds of training so far
        self.images = 0  # images trained on in this session
        self.session_trained = 0.0  # ... and the seconds they took
        self.reserve = 0.02 * self.budget  # what the end will take; re-estimated as it goes
        self._since: float | None = None
        self._mark: tuple[int, float] | None = None

    def elapsed(self) -> float:
        """Wall seconds the run has used, earlier sessions included."""
        return self.used + self.clock() - self.started

    def pause(self) -> None:
        if self._since is not None:
            seconds = self.clock() - self._since
            self.trained += seconds
            self.session_trained += seconds
            self._since = None

    def resume(self) -> None:
        if self._since is None:
            self._since = self.clock()

    def seconds_trained(self) -> float:
        running = self.clock() - self._since if self._since is not None else 0.0
        return self.trained + running

    def training_seconds(self) -> float:
        """The training time the run can have: the budget less setup, the overhead seen so far
        and the reserve for the end."""
        overhead = self.elapsed() - self.seconds_trained()
        return max(self.budget - overhead - self.reserve, 1.0)

    def progress(self) -> float:
        return min(self.seconds_trained() / self.training_seconds(), 1.0)

    def expired(self) -> bool:
        return self.seconds_trained() >= self.training_seconds()

    def estimate_epochs(self, images_per_epoch: int, done_epochs: float) -> int:
        """The epoch count the budget allows at the throughput measured so far (at least one
        more than done)."""
        rate = self.rate()
        if rate is None:
            return max(int(done_epochs) + 1, 1)
        left = (self.training_seconds() - self.seconds_trained()) * rate / max(images_per_epoch, 1)
        return max(math.ceil(done_epochs + left), int(done_epochs) + 1)

    def rate(self) -> float | None:
        """Training images per second in this session, None before any; from the end of the
        first epoch on, without it (its first steps include compiling the train step)."""
        seconds = self.session_trained + (
            self.clock() - self._since if self._since is not None else 0.0
        )
        images = self.images
        if self._mark is not None and images > self._mark[0]:
            images, seconds = images - self._mark[0], seconds - self._mark[1]
        return images / seconds if images > 0 and seconds > 0 else None

    def mark_epoch(self) -> None:
        """The first epoch's end: later rates leave it out."""
        if self._mark is None:
            self._mark = (self.images, self.session_trained)


class WeightAverage:
    """An exponential moving average of a model's weights (YOLOv5's `ModelEMA`), kept beside
    them as NumPy arrays: after each update `avg = d * avg + (1 - d) * w` with the decay ramped
    up from 0, `d = momentum * (1 - exp(-updates / tau))`, so that a short run's average follows
    its weights and a long run's smooths over about `1 / (1 - momentum)` steps. Every weight is
    averaged, batch-norm statistics included. The model trains on its own weights; `swapped`
    puts the average in for validation and saving, then takes it out again."""

    def __init__(self, model, momentum: float = 0.9999, tau: float = 2000.0, updates: int = 0):
        self.momentum = float(momentum)
        self.tau = float(tau)
        self.updates = int(updates)
        self.average = [np.array(w, np.float32, copy=True) for w in model.get_weights()]

    def decay(self) -> float:
        if self.tau <= 0:
            return self.momentum
        return self.momentum * (1.0 - math.exp(-self.updates / self.tau))

    def update(self, model, steps: int = 1) -> None:
        """Averages in the model's weights after `steps` more optimizer steps. With `steps > 1`
        (an update every k batches, which saves reading 6 M weights out of the framework at
        every batch) the average decays by the product of the k steps' decays and takes the
        current weights for all k: the weights of the k - 1 steps in between are not read.
        Their share of a 0.9999-decay average is small; a short run's early average (decay
        near 0) follows the current weights, as it would."""
        factor = 1.0
        for _ in range(int(steps)):
            self.updates += 1
            factor *= self.decay()
        for average, weight in zip(self.average, model.get_weights(), strict=True):
            average *= factor
            average += (1.0 - factor) * weight

    def swapped(self, model):
        """A context in which `model` holds the average; its own weights come back after."""
        return _Swapped(model, self.average)

    def state(self) -> dict[str, np.ndarray]:
        return {
            "updates": np.array(self.updates),
            **{f"w{i:04d}": w for i, w in enumerate(self.average)},
        }

    def load_state(self, values: dict[str, np.ndarray]) -> bool:
        """Restores `state()`; False (and nothing changed) when it does not fit the model."""
        weights = [values[k] for k in sorted(k for k in values if k.startswith("w"))]
        if len(weights) != len(self.average) or any(
            w.shape != a.shape for w, a in zip(weights, self.average, strict=True)
        ):
            return False
        self.average = [np.array(w, np.float32) for w in weights]
        self.updates = int(values["updates"])
        return True


class _Swapped:
    def __init__(self, model, weights):
        self.model, self.weights, self.own = model, weights, None

    def __enter__(self):
        self.own = self.model.get_weights()
        self.model.set_weights(self.weights)
        return self.model

    def __exit__(self, *exc):
        self.model.set_weights(self.own)
        return False
