"""Search-space files: parsing, the simplex grid, tied parameters, and errors that name the file,
the field and the fix."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.models.registry import get_model
from bench.tune.space import SPACES_DIR, check_space, load_space, simplex_grid, space_names

REQUIRED_SPACES = {"copf", "lightgcn", "mf-bpr", "crgcn", "mb-cgcn", "mbgcn", "cigf", "pkef",
                   "bcipm"}


def write(tmp_path: Path, text: str, name: str = "space.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_simplex_grid_of_three_behaviors_in_sixths():
    grid = simplex_grid(3, 6)
    assert len(grid) == 28 == math.comb(6 + 2, 2)
    assert len({tuple(v) for v in grid}) == 28
    for vector in grid:
        assert len(vector) == 3
        assert sum(vector) == pytest.approx(1.0)
        assert all(round(w * 6) == pytest.approx(w * 6) and 0 <= w <= 1 for w in vector)
    assert [0.0, 2 / 6, 4 / 6] in grid          # COPF's Beibei weights lie on the grid
    assert len(simplex_grid(4, 6)) == math.comb(6 + 3, 3)


def test_copf_space_is_the_papers_grid():
    space = load_space("copf")
    assert space.model == "copf"
    layers = space.dimension("layers")
    assert layers.values == (1, 2, 3, 4) and layers.per_behavior and layers.also == ("mtl_layers",)
    assert space.dimension("loss_weights").simplex == 6
    assert space.dimension("cl_temperature").values == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)
    assert space.grid_size(3) == 4 * 28 * 7


def test_tied_parameters_take_one_value_for_every_behavior():
    layers = load_space("copf").dimension("layers")
    assert layers.overrides(2, 3) == {"layers": [2, 2, 2], "mtl_layers": [2, 2, 2]}
    assert layers.overrides(3, 4) == {"layers": [3, 3, 3, 3], "mtl_layers": [3, 3, 3, 3]}


def test_every_baseline_has_a_space_and_all_share_one_budget():
    """The models' own spaces share one budget (a smaller space, such as copf-weights-tau, may
    carry its own)."""
    assert REQUIRED_SPACES <= set(space_names())
    budgets = {name: load_space(name).budget for name in REQUIRED_SPACES}
    assert len(set(budgets.values())) == 1, budgets


@pytest.mark.parametrize("name", sorted(REQUIRED_SPACES))
def test_shipped_spaces_fit_their_model_on_three_behaviors(name):
    space = load_space(name)
    check_space(space, get_model(space.model), "demo", 3)


def test_each_shipped_space_says_where_its_values_come_from():
    for path in sorted(SPACES_DIR.glob("*.toml")):
        comment = " ".join(line for line in path.read_text().splitlines() if line.startswith("#"))
        assert "model-specs.md" in comment or "paper" in comment, path.name


@pytest.mark.parametrize("text, field, fix", [
    ('model = "copf"\n[params]\ncl_temperature = { value = [0.1] }\n',
     "params.cl_temperature", "allowed"),
    ('model = "copf"\n[params]\ncl_temperature = [0.1, 0.2]\n',
     "params.cl_temperature", "values = [...]"),
    ('model = "copf"\n[params]\nlr = { values = [1e-3], range = [1e-4, 1e-2] }\n',
     "params.lr", "exactly one of"),
    ('model = "copf"\n[params]\nlr = { range = [0.0, 1e-2], scale = "log" }\n',
     "params.lr.range", "low > 0"),
    ('model = "copf"\n[params]\nlr = { range = [1e-2, 1e-4] }\n', "params.lr.range", "low < high"),
    ('model = "copf"\n[params]\nloss_weights = { simplex = 0 }\n',
     "params.loss_weights.simplex", "positive integer"),
    ('model = "copf"\n[params]\ncl_temperature = { values = [0.1, 0.1] }\n',
     "params.cl_temperature.values", "list each once"),
    ('model = "copf"\nbudget = 0\n[params]\nlr = { values = [1e-3] }\n', "'budget'",
     "positive integer"),
    ('model = "copf"\n', "[params]", "at least one"),
    ('[params]\nlr = { values = [1e-3] }\n', "'model'", 'model = "copf"'),
    ('model = "copf"\nbudegt = 3\n[params]\nlr = { values = [1e-3] }\n', "budegt", "allowed"),
    ('model = "copf"\n[params]\nlayers = { values = [1], per_behavior = true }\n'
     'mtl_layers = { values = [1], per_behavior = true, also = ["layers"] }\n',
     "params.mtl_layers", "searched once"),
])
def test_parse_errors_name_the_file_the_field_and_the_fix(tmp_path, text, field, fix):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_space(path)
    message = str(err.value)
    assert str(path) in message and field in message and fix in message, message


@pytest.mark.parametrize("entry, field, fix", [
    ("cl_temperature = { values = [0.1, -0.2] }", "params.cl_temperature", "value -0.2"),
    ("layers = { values = [1, 2] }", "params.layers", "per_behavior = true"),
    ("lr = { values = [1e-3], per_behavior = true }", "params.lr", "remove per_behavior"),
    ("gnn_layers = { values = [1, 2] }", "params.gnn_layers", "bench list params copf"),
    ("layers = { values = [1], per_behavior = true, also = ['mtl_layer'] }", "params.layers",
     "'mtl_layer'"),
    ("layers = { values = [[1, 1], [2, 2]] }", "params.layers", "list 3 entries"),
    ("cl_temperature = { range = [0.0, 0.5] }", "params.cl_temperature", "value 0.0"),
])
def test_values_are_checked_through_the_models_parameter_declarations(tmp_path, entry, field, fix):
    path = write(tmp_path, f'model = "copf"\n[params]\n{entry}\n')
    space = load_space(path)
    with pytest.raises(ConfigError) as err:
        check_space(space, get_model("copf"), "demo", 3)
    message = str(err.value)
    assert str(path) in message and field in message and fix in message, message


def test_a_space_for_another_model_or_a_fixed_searched_parameter_is_refused(tmp_path):
    space = load_space("copf")
    with pytest.raises(ConfigError, match=r"model: the space is written for 'copf'.*--models copf"):
        check_space(space, get_model("lightgcn"), "demo", 3)
    with pytest.raises(ConfigError, match=r"params.cl_temperature: 'cl_temperature' is searched"):
        check_space(space, get_model("copf"), "demo", 3, {"cl_temperature": 0.2})


def test_unknown_space_names_list_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"unknown space 'nope'; shipped spaces: .*copf"):
        load_space("nope")


def test_labels_read_as_written():
    space = load_space("copf")
    assert space.dimension("loss_weights").label([0.0, 2 / 6, 4 / 6]) == "0,2/6,4/6"
    assert space.dimension("loss_weights").label([0.0, 0.0, 1.0]) == "0,0,1"
    assert space.dimension("cl_temperature").label(0.3) == "0.3"
