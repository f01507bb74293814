"""Records name the code they ran: the checkout's commit, or the one a remote copy was told."""
from __future__ import annotations

from bench.records import git_commit


def test_a_given_commit_names_a_copy_run_elsewhere(monkeypatch):
    monkeypatch.setenv("BENCH_GIT_COMMIT", "0123abc")
    assert git_commit() == "0123abc"


def test_without_it_the_checkouts_commit(monkeypatch):
    monkeypatch.delenv("BENCH_GIT_COMMIT", raising=False)
    commit = git_commit()
    assert commit == "unknown" or len(commit.split("+")[0]) == 40
