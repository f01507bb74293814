"""How ``bench tune`` picks the configurations it tries.

- ``grid``: every point of the space when the grid has at most ``budget`` points, else a seeded
  random subset of ``budget`` grid points (drawn without repeats, listed in grid order).
- ``random``: ``budget`` independent draws per dimension (a value, a simplex vector, or a number
  from a range on its scale), seeded; a repeated configuration is drawn again.
- ``optuna``: Optuna's TPE sampler (seeded) in ask-and-tell rounds: each round asks for several
  configurations at once so that they train together, and is told their validation HR@10 before
  the next round. Optuna is an optional extra (``pip install -e ".[tune]"``).

The default is ``grid`` when the grid fits the budget and ``random`` otherwise (a space with a
range has no grid). A configuration is a mapping from each dimension's name to its searched value,
in JSON-native types (a simplex vector is a list of floats).
"""
from __future__ import annotations

import math
import random
import warnings
from typing import Any

from bench.errors import ConfigError
from bench.tune.space import Dimension, Space

SEARCHES = ("grid", "random", "optuna")
Configuration = dict[str, Any]


def choose_search(requested: str | None, space: Space, n_behaviors: int,
                  budget: int) -> str:
    """The search to run: the one asked for, else grid if the grid fits the budget, else random."""
    size = space.grid_size(n_behaviors)
    if requested is None:
        return "grid" if size is not None and size <= budget else "random"
    if requested not in SEARCHES:
        raise ConfigError(f"--search {requested}: choose one of {', '.join(SEARCHES)}")
    if requested == "grid" and size is None:
        ranged = [d.name for d in space.dimensions if d.is_range]
        raise ConfigError(f"{space.source}: params.{ranged[0]} is a range, so the space has no "
                          "grid; use --search random or --search optuna, or give it "
                          "values = [...]")
    return requested


def grid_point(space: Space, n_behaviors: int, index: int) -> Configuration:
    """The ``index``-th point of the grid (the last dimension varies fastest)."""
    point: Configuration = {}
    for dim in reversed(space.dimensions):
        choices = dim.choices(n_behaviors)
        index, position = divmod(index, len(choices))
        point[dim.name] = choices[position]
    return {d.name: point[d.name] for d in space.dimensions}


def grid_configurations(space: Space, n_behaviors: int, budget: int,
                        seed: int) -> tuple[list[Configuration], str]:
    """The whole grid, or a seeded random subset of ``budget`` of its points; and a sentence
    saying which."""
    size = space.grid_size(n_behaviors)
    if size <= budget:
        return ([grid_point(space, n_behaviors, i) for i in range(size)],
                f"grid search: all {size} grid point(s)")
    chosen = sorted(random.Random(seed).sample(range(size), budget))
    return ([grid_point(space, n_behaviors, i) for i in chosen],
            f"grid search: the grid has {size} points, more than the budget of {budget}; "
            f"tried a random subset of {budget} (search seed {seed})")


def random_value(dim: Dimension, n_behaviors: int, rng: random.Random) -> Any:
    """One draw of a dimension: uniform over its values, or on its range's scale."""
    if not dim.is_range:
        return rng.choice(dim.choices(n_behaviors))
    if dim.scale == "log":
        drawn = math.exp(rng.uniform(math.log(dim.low), math.log(dim.high)))
    else:
        drawn = rng.uniform(dim.low, dim.high)
    if dim.integer:
        return min(max(round(drawn), dim.low), dim.high)
    return drawn


def random_configurations(space: Space, n_behaviors: int, budget: int,
                          seed: int) -> tuple[list[Configuration], str]:
    """``budget`` distinct random configurations (fewer when the space has fewer points)."""
    rng = random.Random(seed)
    size = space.grid_size(n_behaviors)
    wanted = budget if size is None else min(budget, size)
    out: list[Configuration] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < wanted and attempts < 100 * budget:
        attempts += 1
        config = {d.name: random_value(d, n_behaviors, rng) for d in space.dimensions}
        key = repr(sorted(config.items()))
        if key not in seen:
            seen.add(key)
            out.append(config)
    note = f"random search: {len(out)} configuration(s) drawn (search seed {seed})"
    if len(out) < budget:
        note += f"; the space has only {len(out)} distinct point(s), fewer than the budget"
    return out, note


class OptunaSearch:
    """Optuna's seeded TPE sampler, asked for configurations in rounds and told their values."""

    def __init__(self, space: Space, n_behaviors: int, seed: int) -> None:
        try:
            import optuna
        except ImportError:
            raise ConfigError("--search optuna needs Optuna, an optional extra: "
                              "pip install -e \".[tune]\" (or pip install 'optuna>=3'); "
                              "--search grid and random need nothing more") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            # constant_liar (several asks before their tells) is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self.space = space
        self.n_behaviors = n_behaviors
        # categorical choices Optuna cannot store (lists) are offered by their labels
        self.by_label = {d.name: {d.label(v): v for v in d.choices(n_behaviors)}
                         for d in space.dimensions if not d.is_range}

    def _suggest(self, trial, dim: Dimension) -> Any:
        if dim.is_range:
            if dim.integer:
                return trial.suggest_int(dim.name, dim.low, dim.high, log=dim.scale == "log")
            return trial.suggest_float(dim.name, dim.low, dim.high, log=dim.scale == "log")
        choices = dim.choices(self.n_behaviors)
        if all(v is None or isinstance(v, (bool, int, float, str)) for v in choices):
            return trial.suggest_categorical(dim.name, choices)
        return self.by_label[dim.name][trial.suggest_categorical(dim.name,
                                                                 list(self.by_label[dim.name]))]

    def ask(self, count: int) -> list[tuple[Any, Configuration]]:
        """``count`` new (Optuna trial, configuration) pairs."""
        asked = []
        for _ in range(count):
            trial = self.study.ask()
            asked.append((trial, {d.name: self._suggest(trial, d) for d in self.space.dimensions}))
        return asked

    def tell(self, trial, value: float | None) -> None:
        """The configuration's validation HR@10, or None when it failed."""
        import optuna
        if value is None:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, value)
