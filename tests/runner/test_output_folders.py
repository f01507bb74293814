"""A results (or figures) path that cannot be written ends in one `error:` line naming the option,
before anything is trained or built; no traceback."""
from __future__ import annotations

import errno
import tempfile

import pytest

from bench.cli import main

RUN = ["run", "--models", "pop", "--datasets", "demo", "--seeds", "1", "--device", "cpu",
       "--no-progress"]


def one_error_line(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "results.txt"
    path.write_text("not a folder\n")
    return path


def test_run_refuses_a_results_path_that_is_a_file(capsys, a_file):
    line = one_error_line(capsys, [*RUN, "--results-dir", str(a_file)])
    assert f"--results-dir {a_file} is a file" in line and "--results-dir DIR" in line
    assert one_error_line(capsys, [*RUN, "--results-dir", str(a_file), "--dry-run"]) == line


def test_run_refuses_a_results_path_under_a_file(capsys, a_file):
    line = one_error_line(capsys, [*RUN, "--results-dir", str(a_file / "sub")])
    assert f"lies under {a_file}, which is a file" in line


def test_run_refuses_a_read_only_results_folder(tmp_path, capsys, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    results = tmp_path / "results"
    line = one_error_line(capsys, [*RUN, "--results-dir", str(results)])
    assert line == (f"error: --results-dir {results} cannot be written (Read-only file system); "
                    "pass a folder you can write to (--results-dir DIR)")


def test_a_writable_results_folder_keeps_no_probe_file(tmp_path, capsys):
    results = tmp_path / "results"
    assert main([*RUN, "--results-dir", str(results), "--dry-run"]) == 0
    assert main([*RUN, "--results-dir", str(results)]) == 0
    capsys.readouterr()
    assert not list(results.glob(".write-check-*"))


def test_perf_refuses_a_results_path_that_is_a_file(capsys, a_file):
    line = one_error_line(capsys, ["perf", "--models", "pop", "--device", "cpu",
                                   "--results-dir", str(a_file)])
    assert f"--results-dir {a_file} is a file" in line


def test_report_refuses_files_where_folders_belong(tmp_path, capsys, a_file):
    line = one_error_line(capsys, ["report", "summary", "--results-dir", str(a_file)])
    assert "--results-dir" in line
    line = one_error_line(capsys, ["report", "all", "--results-dir", str(tmp_path / "r"),
                                   "--figures-dir", str(a_file)])
    assert f"--figures-dir {a_file} is a file" in line
    line = one_error_line(capsys, ["report", "fig6_patterns", "--datasets", "demo",
                                   "--figures-dir", str(a_file)])
    assert "--figures-dir" in line
    line = one_error_line(capsys, ["report", "table2", "--results-dir", str(tmp_path / "r"),
                                   "--output", str(tmp_path)])
    assert f"--output {tmp_path} is a folder" in line
