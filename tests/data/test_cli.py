"""``bench data`` commands, run through the module's own entry point."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys


from bench.data.cli import add_data_parser, main
from tests.data.conftest import REPO, TINY_BEHAVIORS, Exploit, write_pickle


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_parser_hook_sets_handler():
    parser = argparse.ArgumentParser(prog="bench")
    add_data_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "stats", "demo", "--data-dir", "/x"])
    assert callable(args.func) and args.name == "demo" and args.data_dir == "/x"


def test_list(tmp_path, tiny_pkef, capsys):
    code, out, _ = run(["list", "--data-dir", str(tmp_path)], capsys)
    assert code == 0 and f"data dir: {tmp_path}" in out
    assert "taobao" in out and "pv -> cart -> buy" in out and "absent" in out
    assert "generated" in out


def test_stats_demo(capsys):
    code, out, _ = run(["stats", "demo"], capsys)
    assert code == 0 and "#users" in out and "1,200" in out
    assert "share of users" in out and "share of user-item pairs" in out


def test_stats_own_folders(tiny_pkef, tmp_path, capsys):
    code, out, _ = run(["stats", str(tiny_pkef), "--layout", "pkef", "--behaviors",
                        ",".join(TINY_BEHAVIORS), "--patterns", "user"], capsys)
    assert code == 0 and "view 10; cart 4; buy 6" in out and "1 0 1" in out
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "t.csv").write_text("user,item,behavior\na,x,view\na,y,buy\nb,x,buy\n")
    (tmp_path / "own" / "s.csv").write_text("user,item\na,x\n")
    code, out, _ = run(["stats", str(tmp_path / "own"), "--layout", "csv", "--behaviors",
                        "view,buy", "--train", "t.csv", "--test", "s.csv"], capsys)
    assert code == 0 and "view 1; buy 2" in out


def test_errors_are_one_line_exit_2(tmp_path, tiny_pkef, capsys):
    code, out, err = run(["stats", "nope"], capsys)
    assert code == 2 and err.startswith("error: unknown dataset 'nope'") and err.count("\n") == 1
    code, _, err = run(["stats", str(tiny_pkef)], capsys)
    assert code == 2 and "pass --layout" in err
    code, _, err = run(["stats", str(tiny_pkef), "--layout", "pkef"], capsys)
    assert code == 2 and "--behaviors is required" in err
    code, _, err = run(["stats", "taobao", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "bench data fetch taobao" in err and "Traceback" not in err


def test_check_own_folder(tiny_pkef, capsys):
    code, out, _ = run(["check", str(tiny_pkef), "--layout", "pkef", "--behaviors",
                        "click,view,cart,buy"], capsys)
    assert code == 1 and "FAILED" in out and "behavior 'click'" in out


def test_malicious_pickle_refused_by_stats_cli(tmp_path):
    """The real command line, in a subprocess: the payload must not run."""
    work = tmp_path / "work"
    folder = tmp_path / "data" / "retailrocket"
    work.mkdir()
    write_pickle(folder / "trn_view", Exploit("touch marker"))
    for name in ("trn_cart", "trn_buy", "tst_int"):
        write_pickle(folder / name, Exploit("touch marker"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for argv in (["stats", "retailrocket", "--data-dir", str(tmp_path / "data")],
                 ["stats", str(folder), "--layout", "pkef", "--behaviors", "view,cart,buy"]):
        proc = subprocess.run([sys.executable, "-m", "bench", "data", *argv], cwd=work, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and "refused" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert not (work / "marker").exists()
    assert not (work / "marker").exists()
