"""Download a named dataset from the authors' repositories and verify it.

Every file is streamed into a hidden temporary file inside the dataset folder, verified (SHA-256
from the catalog, or shape and count where no checksum can match), and only then renamed into
place with ``os.replace``, which is atomic on one file system: a dropped connection, a corrupted
download or a crash never leaves a half-written file under the final name, and the temporary file
is removed. Files already present and verified are skipped, so an interrupted fetch resumes.

Archives (Tmall's ``tmall.zip``) are checked member by member before anything is written:
absolute paths, ``..`` components, links and anything resolving outside the folder are refused.
``base_url`` replaces every URL's directory (``<base_url>/<file name>``), for mirrors and tests.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from bench.data import catalog
from bench.data.catalog import VERIFY_NONE, VERIFY_SHA256, DatasetSpec, FileSpec
from bench.data.stats import sha256_of, verify_file
from bench.errors import DataError

CHUNK = 1 << 16
DEFAULT_TIMEOUT = 60.0
MAX_ARCHIVE_BYTES = 16 << 30  # uncompressed; refuses zip bombs long before the disk fills
USER_AGENT = "mbbench-data-fetch"


@dataclass
class FetchReport:
    """What ``fetch`` did, file by file."""

    name: str
    folder: Path
    downloaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"{self.name}: {self.folder}"]
        if self.downloaded:
            lines.append(f"  downloaded and verified: {', '.join(self.downloaded)}")
        if self.skipped:
            lines.append(f"  already present and verified: {', '.join(self.skipped)}")
        if self.unverified:
            lines.append(f"  present, no checksum known: {', '.join(self.unverified)}")
        return "\n".join(lines)


def fetch(name: str, data_dir: str | Path | None = None, base_url: str | None = None, *,
          timeout: float = DEFAULT_TIMEOUT,
          progress: Callable[[str], None] | None = None) -> FetchReport:
    """Download the named dataset into ``<data dir>/<name>``, verifying every file."""
    spec = catalog.get(name)
    say = progress or (lambda message: None)
    folder = catalog.folder_of(name, data_dir)
    report = FetchReport(name=name, folder=folder)
    if spec.layout == "demo":
        return report
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the dataset folder {folder} ({exc.strerror or exc}); "
                        "choose another --data-dir") from None
    pending: list[FileSpec] = []
    for file in spec.files:
        if _present_and_good(folder / file.name, file, spec):
            (report.unverified if file.verify == VERIFY_NONE else report.skipped).append(file.name)
        else:
            pending.append(file)
    for file in (f for f in pending if f.archive is None):
        url = _url(file.url, file.name, base_url)
        say(f"downloading {file.name} from {url}")
        _download_verified(url, folder, file, spec, timeout)
        (report.unverified if file.verify == VERIFY_NONE else report.downloaded).append(file.name)
    for archive in spec.archives:
        wanted = [f for f in pending if f.archive == archive.name]
        if wanted:
            url = _url(archive.url, archive.name, base_url)
            say(f"downloading {archive.name} from {url} (for {', '.join(f.name for f in wanted)})")
            _fetch_from_archive(url, archive.name, folder, wanted, spec, timeout)
            report.downloaded.extend(f.name for f in wanted)
    if pending and not spec.verifiable:
        try:
            catalog.load_dataset(name, data_dir)
        except DataError as exc:
            raise DataError(f"fetched '{name}' into {folder} but it does not load: {exc}") from None
    return report


def _url(default: str | None, file_name: str, base_url: str | None) -> str:
    if base_url:
        return f"{base_url.rstrip('/')}/{file_name}"
    if not default:  # pragma: no cover - catalog invariant
        raise DataError(f"{file_name}: the catalog has no download URL; pass --base-url")
    return default


def _present_and_good(path: Path, file: FileSpec, spec: DatasetSpec) -> bool:
    if not path.is_file():
        return False
    return verify_file(path, file, spec).status in ("ok", "unverified")


# ---- one file -------------------------------------------------------------------------------------
def download(url: str, folder: Path, label: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[Path, str]:
    """Stream ``url`` into a new hidden temporary file in ``folder``; return (path, sha256).
    On any failure the temporary file is removed and DataError names ``label`` and the URL."""
    handle, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{label}.", suffix=".part")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                declared = response.headers.get("Content-Length")
                received = 0
                while block := response.read(CHUNK):
                    out.write(block)
                    digest.update(block)
                    received += len(block)
            if declared is not None and declared.isdigit() and received != int(declared):
                raise DataError(f"{label}: download from {url} was cut off after {received:,} of "
                                f"{int(declared):,} bytes; nothing was written, run the fetch again")
            out.flush()
            os.fsync(out.fileno())
        return tmp, digest.hexdigest()
    except DataError:
        tmp.unlink(missing_ok=True)
        raise
    except urllib.error.HTTPError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{label}: download from {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"{label}: download from {url} failed ({type(exc).__name__}: {reason}); "
                        "nothing was written, check the connection and run the fetch again") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _download_verified(url: str, folder: Path, file: FileSpec, spec: DatasetSpec,
                       timeout: float) -> None:
    tmp, digest = download(url, folder, file.name, timeout)
    try:
        _verify_candidate(tmp, digest, file, spec, source=url)
        os.replace(tmp, folder / file.name)
    finally:
        tmp.unlink(missing_ok=True)


def _verify_candidate(path: Path, digest: str | None, file: FileSpec, spec: DatasetSpec,
                      source: str) -> None:
    if file.verify == VERIFY_SHA256:
        digest = digest or sha256_of(path)
        if digest != file.sha256:
            raise DataError(f"{file.name}: checksum mismatch for the download from {source}: sha256 "
                            f"{digest} instead of {file.sha256}; the download is corrupted or the "
                            "file changed upstream; nothing was written")
        return
    if file.verify == VERIFY_NONE:
        return
    verdict = verify_file(path, file, spec)
    if verdict.status != "ok":
        raise DataError(f"{file.name}: the download from {source} does not match the catalog: "
                        f"{verdict.detail}; nothing was written")


# ---- archives -------------------------------------------------------------------------------------
_DRIVE = re.compile(r"^[A-Za-z]:")


def _member_problem(info: zipfile.ZipInfo, root: Path) -> str | None:
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name):
        return "absolute path"
    if ".." in PurePosixPath(name).parts:
        return "'..' component"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    target = (root / name).resolve()
    if target != root and root not in target.parents:
        return "resolves outside the target folder"
    return None


def safe_extract(archive: str | Path, dest: str | Path, members: list[str] | None = None,
                 label: str | None = None) -> list[Path]:
    """Extract ``archive`` (all members, or those named) into ``dest`` after checking every member:
    nothing is written when any member is unsafe. Returns the extracted files."""
    archive, dest = Path(archive), Path(dest)
    label = label or archive.name
    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                problem = _member_problem(info, root)
                if problem:
                    raise DataError(f"{label}: refused to extract: member '{info.filename}' has "
                                    f"an unsafe path ({problem}); nothing was extracted")
            if sum(i.file_size for i in infos) > MAX_ARCHIVE_BYTES:
                raise DataError(f"{label}: refused to extract: more than "
                                f"{MAX_ARCHIVE_BYTES >> 30} GiB uncompressed")
            chosen = infos if members is None else [i for i in infos if i.filename in members]
            written = []
            for info in chosen:
                target = root / info.filename.replace("\\", "/")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
                written.append(target)
            return written
    except zipfile.BadZipFile as exc:
        raise DataError(f"{label}: not a valid zip archive or corrupted ({exc})") from None


def _fetch_from_archive(url: str, archive_name: str, folder: Path, wanted: list[FileSpec],
                        spec: DatasetSpec, timeout: float) -> None:
    tmp_zip, _ = download(url, folder, archive_name, timeout)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=f".{archive_name}.extract."))
    try:
        with _open_zip(tmp_zip, archive_name, url) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir()]
        chosen: dict[str, str] = {}
        for file in wanted:
            matches = [n for n in names if PurePosixPath(n.replace("\\", "/")).name == file.name]
            if len(matches) != 1:
                found = "no member" if not matches else f"{len(matches)} members"
                raise DataError(f"{archive_name} from {url}: {found} named '{file.name}'; the "
                                "archive does not have the expected layout")
            chosen[file.name] = matches[0]
        safe_extract(tmp_zip, staging, members=list(chosen.values()),
                     label=f"{archive_name} from {url}")
        for file in wanted:
            extracted = staging / chosen[file.name].replace("\\", "/")
            _verify_candidate(extracted, None, file, spec, source=f"{archive_name} ({url})")
        for file in wanted:
            os.replace(staging / chosen[file.name].replace("\\", "/"), folder / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        tmp_zip.unlink(missing_ok=True)


def _open_zip(path: Path, label: str, url: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{label} from {url}: not a valid zip archive ({exc}); the download is "
                        "corrupted or the file moved upstream") from None
