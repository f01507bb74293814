"""fetch against a local HTTP server: verified atomic downloads, failures leave nothing behind."""
from __future__ import annotations

import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.data import catalog
from bench.data.fetch import fetch, safe_extract
from bench.data.stats import sha256_of
from bench.errors import DataError
from tests.data.conftest import TINY_BEHAVIORS, tiny_matrix

RETAIL_FILES = ("trn_view", "trn_cart", "trn_buy", "tst_int")


class _Server:
    """Routes ``/<scenario>/<file>`` to bytes; files in ``drop`` are cut off mid-body."""

    def __init__(self) -> None:
        self.routes: dict[str, dict[str, bytes]] = {}
        self.drop: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                server.requests.append(self.path)
                scenario, _, name = self.path.strip("/").partition("/")
                body = server.routes.get(scenario, {}).get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if f"{scenario}/{name}" in server.drop:
                    self.wfile.write(body[: len(body) // 3])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, scenario: str) -> str:
        return f"{self.base}/{scenario}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server():
    srv = _Server()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def retail_bytes(shared_datasets) -> dict[str, bytes]:
    # A copy of the (small) real retailrocket folder, held in memory and served from there.
    return {name: (shared_datasets / "retailrocket" / name).read_bytes() for name in RETAIL_FILES}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_fetch_verifies_and_skips_present(server, retail_bytes, tmp_path):
    server.routes["good"] = retail_bytes
    report = fetch("retailrocket", tmp_path, base_url=server.url("good"))
    folder = tmp_path / "retailrocket"
    assert report.downloaded == list(RETAIL_FILES)
    for name in RETAIL_FILES:
        assert sha256_of(folder / name) == catalog.get("retailrocket").file(name).sha256
    assert leftovers(folder) == []
    before = len(server.requests)
    again = fetch("retailrocket", tmp_path, base_url=server.url("good"))
    assert again.skipped == list(RETAIL_FILES) and again.downloaded == []
    assert len(server.requests) == before
    assert catalog.load_dataset("retailrocket", tmp_path).n_users == 2_174


def test_corrupted_download_leaves_nothing(server, retail_bytes, tmp_path):
    corrupted = bytearray(retail_bytes["trn_cart"])
    corrupted[len(corrupted) // 2] ^= 0xFF
    server.routes["corrupt"] = {**retail_bytes, "trn_cart": bytes(corrupted)}
    with pytest.raises(DataError) as info:
        fetch("retailrocket", tmp_path, base_url=server.url("corrupt"))
    message = str(info.value)
    assert "trn_cart" in message and "checksum mismatch" in message
    assert server.url("corrupt") + "/trn_cart" in message
    folder = tmp_path / "retailrocket"
    assert (folder / "trn_view").is_file()          # fetched before, verified, kept
    assert not (folder / "trn_cart").exists()
    assert leftovers(folder) == []


def test_dropped_connection_leaves_nothing(server, retail_bytes, tmp_path):
    server.routes["drop"] = retail_bytes
    server.drop.add("drop/trn_view")
    with pytest.raises(DataError, match=r"trn_view: download from .*/drop/trn_view was cut off"):
        fetch("retailrocket", tmp_path, base_url=server.url("drop"))
    folder = tmp_path / "retailrocket"
    assert not (folder / "trn_view").exists()
    assert leftovers(folder) == []


def test_http_error_and_refused_connection(server, tmp_path):
    server.routes["empty"] = {}
    with pytest.raises(DataError, match=r"trn_view: download from .* failed: HTTP 404"):
        fetch("retailrocket", tmp_path, base_url=server.url("empty"))
    with pytest.raises(DataError, match="trn_view: download from http://127.0.0.1:9/x/trn_view"):
        fetch("retailrocket", tmp_path, base_url="http://127.0.0.1:9/x", timeout=5)
    assert leftovers(tmp_path / "retailrocket") == []


def test_corrupted_local_copy_is_replaced(server, retail_bytes, tmp_path):
    server.routes["good"] = retail_bytes
    folder = tmp_path / "retailrocket"
    folder.mkdir()
    (folder / "trn_buy").write_bytes(b"garbage")
    report = fetch("retailrocket", tmp_path, base_url=server.url("good"))
    assert "trn_buy" in report.downloaded
    assert sha256_of(folder / "trn_buy") == catalog.get("retailrocket").file("trn_buy").sha256


# ---- archives ------------------------------------------------------------------------------------
def _zip(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return buffer.getvalue()


@pytest.fixture
def zipped_catalog(monkeypatch):
    """A tiny catalog entry whose trn_view comes from an archive, verified by shape and count."""
    files = catalog._pkef_files("http://unused", TINY_BEHAVIORS, {},
                                archive={"trn_view": "tiny.zip"})
    spec = catalog.DatasetSpec(name="tiny", behaviors=TINY_BEHAVIORS, layout="pkef", users=5,
                               items=6, counts={"view": 10, "cart": 4, "buy": 6}, test_users=4,
                               files=files, archives=(catalog.ArchiveSpec("tiny.zip", "http://unused"),))
    monkeypatch.setitem(catalog.CATALOG, "tiny", spec)
    return spec


def _tiny_files(tiny_pkef: Path) -> dict[str, bytes]:
    return {name: (tiny_pkef / name).read_bytes() for name in ("trn_cart", "trn_buy", "tst_int")}


def test_archive_member_is_extracted_and_verified(server, zipped_catalog, tiny_pkef, tmp_path):
    view = (tiny_pkef / "trn_view").read_bytes()
    server.routes["zip-good"] = {**_tiny_files(tiny_pkef),
                                 "tiny.zip": _zip({"tiny/readme.txt": b"hi", "tiny/trn_view": view})}
    report = fetch("tiny", tmp_path / "data", base_url=server.url("zip-good"))
    folder = tmp_path / "data" / "tiny"
    assert sorted(report.downloaded) == ["trn_buy", "trn_cart", "trn_view", "tst_int"]
    assert (folder / "trn_view").read_bytes() == view
    assert sorted(p.name for p in folder.iterdir()) == ["trn_buy", "trn_cart", "trn_view", "tst_int"]


def test_archive_member_with_wrong_counts_is_refused(server, zipped_catalog, tiny_pkef, tmp_path):
    import pickle
    wrong = pickle.dumps(tiny_matrix("cart"))   # 4 interactions where view needs 10
    server.routes["zip-wrong"] = {**_tiny_files(tiny_pkef), "tiny.zip": _zip({"trn_view": wrong})}
    with pytest.raises(DataError, match=r"trn_view: the download from tiny.zip .*expected 10 interactions"):
        fetch("tiny", tmp_path / "data", base_url=server.url("zip-wrong"))
    folder = tmp_path / "data" / "tiny"
    assert not (folder / "trn_view").exists() and leftovers(folder) == []


@pytest.mark.parametrize("members,links", [
    ({"trn_view": b"x", "../escape": b"evil"}, None),
    ({"trn_view": b"x", "/tmp/absolute": b"evil"}, None),
    ({"trn_view": b"x", "sub/../../escape": b"evil"}, None),
    ({"trn_view": b"x", "C:/windows": b"evil"}, None),
    ({"trn_view": b"x"}, {"link": "/etc/passwd"}),
])
def test_malicious_zip_is_refused(server, zipped_catalog, tiny_pkef, tmp_path, members, links):
    scenario = f"zip-evil-{abs(hash(tuple(members) + tuple(links or ())))}"
    server.routes[scenario] = {**_tiny_files(tiny_pkef), "tiny.zip": _zip(members, links)}
    data = tmp_path / "data"
    with pytest.raises(DataError, match="refused to extract.*unsafe path"):
        fetch("tiny", data, base_url=server.url(scenario))
    folder = data / "tiny"
    assert not (folder / "trn_view").exists() and leftovers(folder) == []
    assert not (data / "escape").exists() and not (tmp_path / "escape").exists()


def test_not_a_zip(server, zipped_catalog, tiny_pkef, tmp_path):
    server.routes["zip-bad"] = {**_tiny_files(tiny_pkef), "tiny.zip": b"not a zip at all"}
    with pytest.raises(DataError, match="tiny.zip from .* not a valid zip"):
        fetch("tiny", tmp_path / "data", base_url=server.url("zip-bad"))
    assert leftovers(tmp_path / "data" / "tiny") == []


def test_safe_extract_direct(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip({"d/f.txt": b"ok", "g.txt": b"ok"}))
    out = tmp_path / "out"
    out.mkdir()
    written = safe_extract(archive, out)
    assert sorted(p.relative_to(out).as_posix() for p in written) == ["d/f.txt", "g.txt"]
    archive.write_bytes(_zip({"ok.txt": b"ok", "../../up.txt": b"evil"}))
    with pytest.raises(DataError, match="'../../up.txt'"):
        safe_extract(archive, tmp_path / "out2")
    assert not (tmp_path / "out2").exists() and not (tmp_path.parent / "up.txt").exists()
