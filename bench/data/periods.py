"""Which periods of the auxiliary behaviors a model may read (``--aux-periods``).

Some layouts split every behavior by period: the bvae files hold ``<behavior>_train``, ``_valid``
and ``_test``, the interactions of the training, validation and test periods; a csv valid or test
file may carry auxiliary rows beside the target's. A model trained on an auxiliary behavior's test
period sees the test period coming (on JD, 71.2% of the test purchases were clicked in the test
period, 7.1% in the training period), so the default training input is the training period of
every behavior. ``train+valid`` and ``all`` add the later periods of the auxiliary behaviors, as an
explicit option that every record and report names. The target behavior's later periods are
always held out: they are the validation and test splits.

A dataset whose files have no periods (the pkef pickles) carries ``aux_periods = None``: it has
one training input, and nothing to choose.
"""
from __future__ import annotations

from bench.errors import ConfigError

AUX_PERIODS = ("train", "train+valid", "all")
DEFAULT_AUX_PERIODS = "train"
SPLITS_OF = {"train": ("train",), "train+valid": ("train", "valid"),
             "all": ("train", "valid", "test")}
DESCRIPTION = {
    None: "the files' training matrices (the layout has no periods)",
    "train": "the training period of every behavior",
    "train+valid": "the training and validation periods of the auxiliary behaviors "
                   "(the target's training period)",
    "all": "every period of the auxiliary behaviors, test period included "
           "(the target's training period)",
}


def check_aux_periods(value: str) -> str:
    """``value`` if it is a known choice, else an error naming the option and the choices."""
    if value not in AUX_PERIODS:
        raise ConfigError(f"--aux-periods {value}: unknown choice; use one of "
                          f"{', '.join(AUX_PERIODS)} (default {DEFAULT_AUX_PERIODS})")
    return value


def auxiliary_splits(aux_periods: str) -> tuple[str, ...]:
    """The splits of an auxiliary behavior that enter the training input."""
    return SPLITS_OF[check_aux_periods(aux_periods)]


def sees_test_period(aux_periods: str | None) -> bool:
    return aux_periods is not None and "test" in SPLITS_OF[aux_periods]


def describe(aux_periods: str | None) -> str:
    """What the training input of a dataset loaded with ``aux_periods`` is, in words."""
    return DESCRIPTION[aux_periods]
