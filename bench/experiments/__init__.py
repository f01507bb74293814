"""Experiments as data: one TOML file per paper table or figure (this folder).

``loader`` reads and validates the files (its docstring describes the format); ``resolve`` turns an
experiment cell into a model and its parameters; ``plan`` expands an experiment into the runner's
trials for ``bench run --experiment NAME``.
"""
from bench.experiments.loader import (Cell, Experiment, Row, Series, experiment_names,
                                      experiment_path, load_experiment, n_behaviors)

__all__ = ["Cell", "Experiment", "Row", "Series", "experiment_names", "experiment_path",
           "load_experiment", "n_behaviors"]
