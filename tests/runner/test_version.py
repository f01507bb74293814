"""`bench --version`: the package metadata's version, else pyproject.toml's."""
from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest

import bench
from bench import version
from bench.cli import main

REPO = Path(__file__).resolve().parents[2]


def pyproject_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_version_option_prints_the_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"mbbench {version.package_version()}"
    assert bench.__version__ == version.package_version()


def test_without_metadata_the_version_comes_from_pyproject(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert version.package_version() == pyproject_version()


def test_without_either_source_the_version_is_unknown(monkeypatch, tmp_path):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    monkeypatch.setattr(version, "PYPROJECT", tmp_path / "absent.toml")
    assert version.package_version() == "unknown"
