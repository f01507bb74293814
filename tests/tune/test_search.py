"""Which configurations a search picks: the whole grid, a seeded subset of it, seeded random
draws, and Optuna's seeded TPE in ask-and-tell rounds."""
from __future__ import annotations

import pytest

from bench.errors import ConfigError
from bench.tune.search import (OptunaSearch, choose_search, grid_configurations, grid_point,
                               random_configurations)
from bench.tune.space import load_space, parse_space, simplex_grid


def small_space():
    return parse_space({"model": "copf", "params": {
        "cl_temperature": {"values": [0.1, 0.2, 0.4]},
        "layers": {"values": [1, 2], "per_behavior": True, "also": ["mtl_layers"]}}}, "small.toml")


def ranged_space():
    return parse_space({"model": "copf", "params": {
        "lr": {"range": [1e-4, 1e-2], "scale": "log"},
        "layers": {"values": [1, 2], "per_behavior": True},
        "batch_size": {"range": [64, 512], "integer": True}}}, "ranged.toml")


def test_a_grid_within_the_budget_is_tried_whole_in_order():
    configs, note = grid_configurations(small_space(), 3, budget=10, seed=0)
    assert configs == [{"cl_temperature": t, "layers": n} for t in (0.1, 0.2, 0.4) for n in (1, 2)]
    assert "all 6 grid point(s)" in note


def test_a_grid_larger_than_the_budget_gives_a_seeded_subset_and_says_so():
    space = load_space("copf")
    first, note = grid_configurations(space, 3, budget=8, seed=3)
    again, _ = grid_configurations(space, 3, budget=8, seed=3)
    other, _ = grid_configurations(space, 3, budget=8, seed=4)
    assert first == again and first != other
    assert len(first) == 8 and len({repr(c) for c in first}) == 8
    everything = [grid_point(space, 3, i) for i in range(space.grid_size(3))]
    assert all(c in everything for c in first)
    assert "784 points, more than the budget of 8" in note and "random subset" in note


def test_default_search_is_grid_when_it_fits_else_random():
    assert choose_search(None, small_space(), 3, budget=6) == "grid"
    assert choose_search(None, small_space(), 3, budget=5) == "random"
    assert choose_search(None, ranged_space(), 3, budget=100) == "random"
    with pytest.raises(ConfigError, match=r"params.lr is a range.*--search random"):
        choose_search("grid", ranged_space(), 3, budget=5)


def test_random_search_is_seeded_and_stays_in_the_space():
    space = ranged_space()
    first, _ = random_configurations(space, 3, budget=20, seed=1)
    assert first == random_configurations(space, 3, budget=20, seed=1)[0]
    assert first != random_configurations(space, 3, budget=20, seed=2)[0]
    for config in first:
        assert 1e-4 <= config["lr"] <= 1e-2 and config["layers"] in (1, 2)
        assert isinstance(config["batch_size"], int) and 64 <= config["batch_size"] <= 512
    lrs = sorted(c["lr"] for c in first)
    assert lrs[0] < 1e-3 < lrs[-1]          # log scale: both decades are visited


def test_random_search_of_a_small_discrete_space_stops_at_its_size():
    configs, note = random_configurations(small_space(), 3, budget=50, seed=0)
    assert len(configs) == 6 and "only 6 distinct point(s)" in note


def test_optuna_rounds_are_seeded_and_map_labels_back():
    pytest.importorskip("optuna")
    space = load_space("copf")

    def run(seed):
        search = OptunaSearch(space, 3, seed)
        asked_all = []
        for _ in range(2):
            asked = search.ask(3)
            for trial, config in asked:
                # a made-up objective: prefers a high target weight and a low temperature
                search.tell(trial, config["loss_weights"][-1] - config["cl_temperature"])
            asked_all += [config for _, config in asked]
        return asked_all
    first = run(7)
    assert first == run(7) and first != run(8)
    for config in first:
        assert config["layers"] in (1, 2, 3, 4)
        assert config["loss_weights"] in simplex_grid(3, 6)
        assert config["cl_temperature"] in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)


def test_optuna_missing_is_a_clear_error(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_optuna(name, *args, **kwargs):
        if name == "optuna" or name.startswith("optuna."):
            raise ImportError("No module named 'optuna'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_optuna)
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[tune\]"'):
        OptunaSearch(small_space(), 3, 0)
