"""The datasets a command line names: catalog names, ``all``, or folders of your own data.

``bench run``, ``bench perf``, ``bench report`` and ``bench data`` read a folder with the same
options (``--layout``, ``--behaviors``; for the csv layout ``--train``/``--test``/``--valid``
files, else ``train.csv``, ``test.csv`` and an optional ``valid.csv`` in the folder). A folder's
dataset is named after the folder: that name goes into records, result paths and reports, and the
records' data fingerprint tells apart two folders of one name.

An entry is a folder when ``--layout`` is given and it is not a catalog name that is absent from
the current directory; without ``--layout`` a folder is refused with the options to add.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from bench.data import catalog
from bench.data.dataset import MultiBehaviorDataset
from bench.data.layouts import LAYOUTS
from bench.data.periods import DEFAULT_AUX_PERIODS
from bench.errors import ConfigError, DataError

CSV_DEFAULTS = {"train": "train", "test": "test", "valid": "valid"}   # + .csv or .tsv
CSV_SUFFIXES = (".csv", ".tsv")

# Behavior orders of the folder datasets this process was given, by dataset name: experiments
# resolve a cell's parameters from its dataset's number of behaviors without reading files.
_FOLDER_BEHAVIORS: dict[str, tuple[str, ...]] = {}
# Where each folder dataset of this process came from, by name: worker processes reload it.
_FOLDER_SOURCES: dict[str, tuple[str, "FolderOptions"]] = {}


@dataclass(frozen=True)
class FolderOptions:
    """How to read a folder of your own data (``bench data check``'s options)."""

    layout: str
    behaviors: tuple[str, ...]
    train: str | None = None
    test: str | None = None
    valid: str | None = None
    delimiter: str | None = None
    prefixes: tuple[str, ...] | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FolderOptions | None:
        """The options on a command line; None without ``--layout`` (then no folder is read)."""
        layout = getattr(args, "layout", None)
        if not layout:
            return None
        if layout not in LAYOUTS:
            raise ConfigError(f"--layout {layout}: unknown layout; choose one of "
                              f"{', '.join(LAYOUTS)}")
        behaviors = names_list(getattr(args, "behaviors", None), "--behaviors")
        prefixes = getattr(args, "prefixes", None)
        return cls(layout, behaviors, train=getattr(args, "train_file", None),
                   test=getattr(args, "test_file", None), valid=getattr(args, "valid_file", None),
                   delimiter=getattr(args, "delimiter", None),
                   prefixes=names_list(prefixes, "--prefixes") if prefixes else None)


def names_list(text: str | None, option: str) -> tuple[str, ...]:
    """Comma-separated names; an empty list is refused, naming the option."""
    names = tuple(n.strip() for n in (text or "").split(",") if n.strip())
    if not names:
        raise DataError(f"{option} is required with --layout: the behavior names, comma-separated, "
                        "upstream -> target (e.g. --behaviors view,cart,buy)")
    return names


def is_folder(entry: str, options: FolderOptions | None) -> bool:
    """Whether a dataset entry names a folder to read with ``options`` (see the module doc)."""
    if options is None:
        return False
    return entry not in catalog.CATALOG or Path(entry).is_dir()


def folder_name(entry: str) -> str:
    """The dataset name of a folder: the folder's own name ('.' gives the current folder's)."""
    return Path(entry).resolve().name


def dataset_name(entry: str, options: FolderOptions | None) -> str:
    """The name records carry for a dataset entry, without reading it; a folder entry's
    behavior order is remembered for :func:`behaviors_of`."""
    if not is_folder(entry, options):
        return entry
    name = folder_name(entry)
    _FOLDER_BEHAVIORS[name] = options.behaviors
    return name


def behaviors_of(name: str) -> tuple[str, ...]:
    """The behavior order models train on, by dataset name: a folder named on this command line,
    else the catalog's entry without the behaviors it expects to have no training pair under the
    default periods (an unknown name lists the known ones)."""
    if name in _FOLDER_BEHAVIORS:
        return _FOLDER_BEHAVIORS[name]
    return catalog.get(name).trained_behaviors


def load_folder(entry: str | Path, options: FolderOptions,
                aux_periods: str = DEFAULT_AUX_PERIODS) -> MultiBehaviorDataset:
    """Read a folder of your own data in ``options.layout``; ``aux_periods``: which periods of the
    auxiliary behaviors are training input, where the files have periods."""
    folder = Path(entry)
    name = folder_name(str(folder))
    if options.layout == "pkef":
        from bench.data.layouts import load_pkef
        return load_pkef(folder, options.behaviors, name=name)
    if options.layout == "bvae":
        from bench.data.layouts import load_bvae
        prefixes = None
        if options.prefixes:
            if len(options.prefixes) != len(options.behaviors):
                raise DataError(f"--prefixes names {len(options.prefixes)} prefixes for "
                                f"{len(options.behaviors)} behaviors; give one per behavior, in "
                                "the same order")
            prefixes = dict(zip(options.behaviors, options.prefixes))
        return load_bvae(folder, options.behaviors, prefixes=prefixes, name=name,
                         aux_periods=aux_periods)
    from bench.data.layouts import load_csv
    given = options.train and options.test
    if not folder.is_dir() and not given:
        raise DataError(f"{folder}: dataset folder not found; pass the folder that holds "
                        "train.csv and test.csv")
    base = folder if folder.is_dir() else Path(".")
    train = base / options.train if options.train else csv_file(folder, "train", "--train")
    test = base / options.test if options.test else csv_file(folder, "test", "--test")
    valid = base / options.valid if options.valid else csv_file(folder, "valid", None)
    return load_csv(train, test, options.behaviors, valid=valid, delimiter=options.delimiter,
                    name=name, aux_periods=aux_periods)


def csv_file(folder: Path, split: str, option: str | None) -> Path | None:
    """``<split>.csv`` or ``<split>.tsv`` in the folder; absent: an error naming the option that
    gives another file, or None for an optional split (``option`` None)."""
    for suffix in CSV_SUFFIXES:
        path = folder / f"{CSV_DEFAULTS[split]}{suffix}"
        if path.is_file():
            return path
    if option is None:
        return None
    columns = "user,item,behavior" if split == "train" else "user,item"
    raise DataError(f"{folder}: no {split}.csv (or {split}.tsv), the csv layout's {split} table "
                    f"({columns} rows); add it or name another file with {option} FILE")


def load_datasets(entries: Sequence[str], data_dir: str | None,
                  options: FolderOptions | None = None,
                  aux_periods: str = DEFAULT_AUX_PERIODS) -> list[MultiBehaviorDataset]:
    """Datasets by catalog name or folder; ``['all']`` means every catalogued dataset whose files
    are present (the others are named on stderr); ``aux_periods`` as in ``bench.data.periods``."""
    entries = list(entries)
    if entries == ["all"]:
        entries = []
        for name in catalog.names():
            missing = catalog.missing_files(name, data_dir)
            if missing:
                print(f"skipping dataset {name}: {len(missing)} file(s) missing", file=sys.stderr)
            else:
                entries.append(name)
    unknown = [e for e in entries if not is_folder(e, options) and e not in catalog.CATALOG]
    if unknown:
        raise ConfigError(_unknown_message(unknown))
    datasets = []
    for entry in entries:
        if is_folder(entry, options):
            dataset = load_folder(entry, options, aux_periods)
            _FOLDER_BEHAVIORS[dataset.name] = dataset.behaviors
            _FOLDER_SOURCES[dataset.name] = (str(Path(entry).resolve()), options)
        else:
            dataset = catalog.load_dataset(entry, data_dir, aux_periods)
        datasets.append(dataset.without_empty_behaviors())
    return datasets


def folder_source(name: str) -> tuple[str, FolderOptions] | None:
    """The folder and options a folder dataset of this process was read from (None for a
    catalog dataset): what another process needs to read it again."""
    return _FOLDER_SOURCES.get(name)


def load_dataset_again(name: str, data_dir: str | None,
                       source: tuple[str, FolderOptions] | None,
                       aux_periods: str = DEFAULT_AUX_PERIODS) -> MultiBehaviorDataset:
    """A dataset by catalog name, or from the folder ``source`` names (worker processes)."""
    if source is not None:
        return load_folder(*source, aux_periods).without_empty_behaviors()
    return catalog.load_dataset(name, data_dir, aux_periods).without_empty_behaviors()


def _unknown_message(unknown: list[str]) -> str:
    folders = [e for e in unknown if Path(e).is_dir()]
    if folders:
        return (f"{', '.join(folders)}: a folder, not a catalog name; to read your own data "
                f"pass --layout ({'|'.join(LAYOUTS)}) and --behaviors a,b,target (upstream -> "
                "target), as for `bench data check`")
    return (f"unknown dataset(s) {unknown}; valid datasets: {', '.join(catalog.names())}, all, "
            "or a folder of your own data with --layout and --behaviors")
