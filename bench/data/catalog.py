"""The named datasets: behaviors, layout, files, download URLs, expected statistics and checksums.

Everything a user needs to get and trust a dataset is written here once: ``fetch`` downloads from
these URLs and verifies these checksums, ``stats.check`` compares a folder with these numbers, and
``load_dataset`` reads a folder by name. The expected counts are those of the COPF paper's Table 1
(and the release files where the paper only rounds); the SHA-256 values are those of the copies
checked into the project's shared data (``SHA256SUMS``), taken from the authors' repositories.

Two shared copies were rebuilt from another release (``taobao/trn_pv``, ``beibei/trn_cart``); the
authors' originals cannot match the rebuilt bytes, so those files, and files whose checksum is not
known (``beibei/trn_pv``, ``tmall/trn_click``), are verified by shape and interaction count instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from bench.data.dataset import MultiBehaviorDataset
from bench.data.location import resolve_data_dir
from bench.data.periods import DEFAULT_AUX_PERIODS
from bench.errors import DataError

VERIFY_SHA256 = "sha256"
VERIFY_SHAPE = "shape-and-count"
VERIFY_NONE = "none"

PKEF_RAW = "https://raw.githubusercontent.com/MC-CV/PKEF/HEAD/Datasets"
# The four smaller Tmall files are in the PKEF history at this commit (the click file never was).
PKEF_TMALL_RAW = ("https://raw.githubusercontent.com/MC-CV/PKEF/"
                  "31bd952deefcb846a9d33ea13a8d09a968cbe9de/Datasets/tmall")
SSLREC_RAW = ("https://raw.githubusercontent.com/HKUDS/SSLRec/HEAD/datasets/multi_behavior/"
              "retail_rocket")
BVAE_RAW = "https://raw.githubusercontent.com/WitnessForest/BVAE/HEAD/BVAE/Dataset/JD"


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset folder and how to get and verify it."""

    name: str
    url: str | None = None          # direct download; None when it comes from ``archive``
    sha256: str | None = None       # hex digest of the authors' file, when known
    behavior: str | None = None     # the behavior whose training matrix it holds; None for tests
    split: str = "train"            # "train", "valid" or "test"
    archive: str | None = None      # name of the ArchiveSpec that contains it
    verify: str = VERIFY_NONE       # how a copy is trusted: sha256, shape-and-count or none
    note: str = ""

    def __post_init__(self) -> None:
        if self.sha256 and self.verify != VERIFY_SHA256:
            object.__setattr__(self, "verify", VERIFY_SHA256)


@dataclass(frozen=True)
class ArchiveSpec:
    """A zip file from which some of a dataset's files are extracted."""

    name: str
    url: str


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset; ``counts`` maps behavior -> expected training interactions (None: unknown)."""

    name: str
    behaviors: tuple[str, ...]
    layout: str
    files: tuple[FileSpec, ...] = ()
    users: int | None = None
    items: int | None = None
    counts: Mapping[str, int | None] = field(default_factory=dict)
    test_users: int | None = None
    archives: tuple[ArchiveSpec, ...] = ()
    prefixes: Mapping[str, str] | None = None
    paper_interactions: float | None = None  # Table 1 prints only a rounded total
    origin: str = ""
    # A dataset no release publishes settings for takes the per-dataset defaults of the named
    # dataset whose behaviors it mirrors (an inference, said in `bench list params`), by the
    # number of behaviors its models train on.
    defaults_like: Mapping[int, str] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return self.behaviors[-1]

    def file(self, name: str) -> FileSpec:
        for spec in self.files:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def archive(self, name: str) -> ArchiveSpec:
        for spec in self.archives:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def trained_behaviors(self) -> tuple[str, ...]:
        """The behaviors models train on under the default periods: those expected to have
        training pairs (``bench.data.select`` drops an empty auxiliary behavior)."""
        return tuple(b for b in self.behaviors if self.counts.get(b) != 0)

    @property
    def verifiable(self) -> bool:
        """Whether the catalog knows enough (checksums or counts) to check a copy."""
        return any(f.verify != VERIFY_NONE for f in self.files)


def _pkef_files(base: str, behaviors: tuple[str, ...], sha: Mapping[str, str],
                notes: Mapping[str, str] | None = None, archive: Mapping[str, str] | None = None
                ) -> tuple[FileSpec, ...]:
    notes = notes or {}
    archive = archive or {}
    files = []
    for behavior in behaviors:
        name = f"trn_{behavior}"
        in_archive = archive.get(name)
        files.append(FileSpec(name=name, url=None if in_archive else f"{base}/{name}",
                              sha256=sha.get(name), behavior=behavior, archive=in_archive,
                              verify=VERIFY_SHAPE, note=notes.get(name, "")))
    files.append(FileSpec(name="tst_int", url=f"{base}/tst_int", sha256=sha.get("tst_int"),
                          split="test", verify=VERIFY_SHAPE, note=notes.get("tst_int", "")))
    return tuple(files)


_REBUILT = ("the copy in the project's shared data is rebuilt from another release, so the authors' "
            "file is verified by shape and count")

_BEIBEI = ("pv", "cart", "buy")
_TAOBAO = ("pv", "cart", "buy")
_TMALL = ("click", "collect", "cart", "buy")
_RETAIL = ("view", "cart", "buy")
_JD = ("click", "favourite", "cart", "purchase")

CATALOG: dict[str, DatasetSpec] = {
    "beibei": DatasetSpec(
        name="beibei", behaviors=_BEIBEI, layout="pkef", users=21_716, items=7_977,
        counts={"pv": 2_412_586, "cart": 642_622, "buy": 282_860}, test_users=21_716,
        paper_interactions=3.3e6, origin="MC-CV/PKEF Datasets/beibei",
        files=_pkef_files(f"{PKEF_RAW}/beibei", _BEIBEI, {
            "trn_buy": "5c38fbeb2cd2c738a2a0f67de0803d94cb90be1c2ce9abe5f49f03c7a3a72a5b",
            "tst_int": "f29bbdf9ad904316c5eb3c2de6173936c78cf2ea72292388a04e3e6e456640ac",
        }, notes={"trn_cart": _REBUILT, "trn_pv": "no checksum known; verified by shape and count"})),
    "taobao": DatasetSpec(
        name="taobao", behaviors=_TAOBAO, layout="pkef", users=15_449, items=11_953,
        counts={"pv": 873_954, "cart": 195_476, "buy": 92_180}, test_users=15_449,
        paper_interactions=1.2e6, origin="MC-CV/PKEF Datasets/taobao",
        files=_pkef_files(f"{PKEF_RAW}/taobao", _TAOBAO, {
            "trn_buy": "614b468e1500704ab97a1610f1124eb2226ec5d33ee6d11597f6a5f8d9ba2767",
            "trn_cart": "75e036c7265f70e35f59a31698b23e33a01d3ba5584c3006a3c4cdb7ec8bdc1b",
            "tst_int": "114aa233923f3fe5342a37e5caabdb4c83188a66702cd6a7dc49dbe740fa3257",
        }, notes={"trn_pv": _REBUILT})),
    "tmall": DatasetSpec(
        name="tmall", behaviors=_TMALL, layout="pkef", users=41_738, items=11_953,
        counts={"click": 1_813_498, "collect": 221_514, "cart": 1_996, "buy": 255_586},
        test_users=29_310, paper_interactions=2.3e6,
        origin="MC-CV/PKEF Datasets/tmall (trn_click from tmall.zip)",
        archives=(ArchiveSpec("tmall.zip", f"{PKEF_RAW}/tmall/tmall.zip"),),
        files=_pkef_files(PKEF_TMALL_RAW, _TMALL, {
            "trn_collect": "46ab0e3bf8461a7095596b133faab3e21603c013cee0c6857ec5e915bdcd4771",
            "trn_cart": "ad6d01080b91dce6104f17c9ec22ad7ac4b206f0983ee474e8a123eb22d4f455",
            "trn_buy": "5da526913b627ae2b9c14140a8574f0bb1ad00fb46f18f3c24151bc32bab39e6",
            "tst_int": "6b3eccd8eff8dc7760046aa072f67b6dc214ad8a04900ad285218514b89328b9",
        }, notes={"trn_click": "too large for the repository's history; extracted from tmall.zip, "
                               "no checksum known; verified by shape and count"},
            archive={"trn_click": "tmall.zip"})),
    "retailrocket": DatasetSpec(
        name="retailrocket", behaviors=_RETAIL, layout="pkef", users=2_174, items=30_113,
        counts={"view": 75_374, "cart": 12_456, "buy": 9_551}, test_users=2_174,
        origin="HKUDS/SSLRec datasets/multi_behavior/retail_rocket",
        files=_pkef_files(SSLREC_RAW, _RETAIL, {
            "trn_view": "ab31f37e3134df85a4728a2580b78603aa6428b9464cf61821e1853ef77d5c4f",
            "trn_cart": "81cee009d43abcaa99f50dcafaa510189418460c9e47ed2c310d5572e98924ac",
            "trn_buy": "8a1a3cd8e25e10509fbe444edf61a88d00399f443826bce95061c3409e1252e9",
            "tst_int": "6d1d5cadb287465f4dbae9b236a67454d481bbfd5a8beaafc4523a4b8ee5179c",
        })),
    "jd": DatasetSpec(
        name="jd", behaviors=_JD, layout="bvae", users=10_690, items=13_465,
        counts={"click": 217_977, "favourite": 7_380, "cart": 0, "purchase": 60_967},
        prefixes={"click": "click", "favourite": "favourite", "cart": "cart", "purchase": "target"},
        origin="WitnessForest/BVAE BVAE/Dataset/JD", defaults_like={3: "taobao", 4: "tmall"},
        files=tuple(
            FileSpec(name=f"{prefix}_{split}", url=f"{BVAE_RAW}/{prefix}_{split}",
                     behavior=behavior, split=split,
                     note="no checksum known; checked by the dataset's users x items")
            for behavior, prefix in (("click", "click"), ("favourite", "favourite"),
                                     ("cart", "cart"), ("purchase", "target"))
            for split in ("train", "valid", "test"))),
    "demo": DatasetSpec(name="demo", behaviors=("view", "cart", "buy"), layout="demo",
                        origin="generated by bench.data.demo.make_demo (no files)"),
}


def defaults_source(name: str, n_behaviors: int | None) -> str | None:
    """The dataset whose per-dataset model defaults ``name`` borrows with ``n_behaviors``
    behaviors; None for the others. JD trains on click -> favourite -> purchase by default (its
    cart has no training pair), Taobao's pv -> cart -> buy shape; with every period its four
    behaviors mirror Tmall's click -> collect -> cart -> buy."""
    spec = CATALOG.get(name)
    return spec.defaults_like.get(n_behaviors) if spec is not None else None


def names() -> list[str]:
    """The catalog's dataset names, in catalog order."""
    return list(CATALOG)


def get(name: str) -> DatasetSpec:
    """The spec of a named dataset; an unknown name lists the known ones."""
    try:
        return CATALOG[name]
    except KeyError:
        raise DataError(f"unknown dataset '{name}'; known datasets: {', '.join(CATALOG)} "
                        "(for your own files pass a folder with --layout)") from None


def folder_of(name: str, data_dir: str | Path | None = None) -> Path:
    """Where the named dataset's files are expected."""
    return resolve_data_dir(data_dir) / get(name).name


def missing_files(name: str, data_dir: str | Path | None = None) -> list[FileSpec]:
    """The files of a named dataset that are absent from its folder."""
    spec = get(name)
    folder = folder_of(name, data_dir)
    return [f for f in spec.files if not (folder / f.name).is_file()]


def available(name: str, data_dir: str | Path | None = None) -> bool:
    """Whether every file of the named dataset is present (``demo`` always is); checksums are
    not computed here (see ``bench.data.stats.check``)."""
    return not missing_files(name, data_dir)


def load_dataset(name: str, data_dir: str | Path | None = None,
                 aux_periods: str = DEFAULT_AUX_PERIODS) -> MultiBehaviorDataset:
    """Load a named dataset from ``<data dir>/<name>`` (``demo`` is generated); ``aux_periods``
    matters only for a layout with periods (``bench.data.periods``)."""
    spec = get(name)
    if spec.layout == "demo":
        from bench.data.demo import make_demo
        return make_demo()
    folder = folder_of(name, data_dir)
    if not folder.is_dir():
        raise DataError(f"dataset '{name}' not found: folder {folder} does not exist; download it "
                        f"with `bench data fetch {name}` or point --data-dir (or $BENCH_DATA) at "
                        "the folder that holds it")
    absent = missing_files(name, data_dir)
    if absent:
        what = [f"behavior '{f.behavior}' ({f.name})" if f.behavior and f.split == "train"
                else f.name for f in absent]
        raise DataError(f"dataset '{name}' in {folder} is incomplete: missing {', '.join(what)}; "
                        f"download it with `bench data fetch {name}`")
    if spec.layout == "pkef":
        from bench.data.layouts.pkef import load_pkef
        return load_pkef(folder, spec.behaviors, name=name, n_users=spec.users,
                         n_items=spec.items)
    if spec.layout == "bvae":
        from bench.data.layouts.bvae import load_bvae
        return load_bvae(folder, spec.behaviors, prefixes=spec.prefixes, name=name,
                         n_users=spec.users, n_items=spec.items, aux_periods=aux_periods)
    raise DataError(f"dataset '{name}': unknown layout '{spec.layout}'")  # pragma: no cover
