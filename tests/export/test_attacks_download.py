"""Hostile or broken download sources: each fails as one typed error (one CLI line) and
leaves nothing behind; resumes are validated, across runs too (kill -9)."""

from __future__ import annotations

import errno
import gzip
import hashlib
import http.server
import importlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import httpx
import pytest
import respx
from click.testing import CliRunner

import tinkerkit.export as tke
from tests.export.helpers import leftovers
from tinkerkit.cli_export import group
from tinkerkit.export.budget import Budget

fetch_module = importlib.import_module("tinkerkit.export.fetch")  # not tke.fetch, the function
URL = "https://storage.test/bucket/adapter_model.safetensors?sig=secret"
DATA = bytes(range(256)) * 64  # 16 KiB
FAST = tke.RetryPolicy(attempts=3, backoff=0.0)


def one_line_error(result: Any) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return str(lines[0])


class Dropped(httpx.SyncByteStream):
    def __init__(self, data: bytes, exc: BaseException | None = None) -> None:
        self.data, self.exc = data, exc or httpx.ReadError("connection reset")

    def __iter__(self) -> Iterator[bytes]:
        yield self.data
        raise self.exc


# --- archives ---------------------------------------------------------------------------------


def test_file_of_zeros_is_not_an_empty_tar(work: Path) -> None:
    bogus = work / "weights.tar"
    bogus.write_bytes(b"\0" * 1024 + b"not a tar")
    with pytest.raises(tke.UnsafeArchiveError) as info:
        tke.download(bogus, work / "out")
    assert str(info.value).startswith(
        f"Refusing to extract {bogus}: member '<archive>' holds no files"
    )
    assert leftovers(work) == ["weights.tar"]
    result = CliRunner().invoke(group, ["download", str(bogus), "--out", str(work / "out")])
    assert "holds no files" in one_line_error(result)


def test_url_of_zeros_is_refused_naming_the_url(work: Path) -> None:
    with respx.mock() as router:
        router.get(URL).mock(return_value=httpx.Response(200, content=b"\0" * 2048))
        with pytest.raises(tke.UnsafeArchiveError) as info:
            tke.download(URL, work / "out", progress=False)
    assert str(info.value).startswith(
        "Refusing to extract https://storage.test/bucket/adapter_model.safetensors: "
    )
    assert "secret" not in str(info.value)
    assert leftovers(work) == []


def _tar(path: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("adapter_config.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def test_sha256_of_a_local_tar_is_checked(work: Path) -> None:
    data = _tar(work / "w.tar")
    with pytest.raises(tke.ChecksumError, match="sha256 checksum mismatch"):
        tke.download(work / "w.tar", work / "bad", sha256="0" * 64)
    good = tke.download(work / "w.tar", work / "ok", sha256=hashlib.sha256(data).hexdigest())
    assert (good / "adapter_config.json").read_bytes() == b"{}"
    assert leftovers(work) == ["ok", "w.tar"]
    result = CliRunner().invoke(
        group, ["download", str(work / "w.tar"), "--out", str(work / "c"), "--sha256", "abc"]
    )
    assert "is not a sha256 digest (64 hex digits)" in one_line_error(result)


# --- checksums ---------------------------------------------------------------------------------


def test_download_from_a_starlette_file_server_is_not_an_md5_mismatch(work: Path) -> None:
    """``tinkerkit serve`` answers with Starlette's FileResponse, whose ETag is an md5 of
    mtime and size: 32 hex digits that are not the content's md5."""
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    served = work / "served.bin"
    served.write_bytes(DATA)
    app = Starlette(routes=[Route("/f/adapter.bin", lambda request: FileResponse(served))])
    with TestClient(app) as client:
        etag = client.get("/f/adapter.bin").headers["etag"]
        assert len(etag.strip('"')) == 32 and etag.strip('"') != hashlib.md5(DATA).hexdigest()
        out = tke.download(
            "http://testserver/f/adapter.bin", work / "out", client=client, progress=False
        )
    assert (out / "adapter.bin").read_bytes() == DATA


# --- caps and deadline --------------------------------------------------------------------------


def test_body_without_length_over_the_cap_is_refused(work: Path) -> None:
    endless = httpx.ByteStream(DATA * 8)  # no Content-Length
    with respx.mock() as router:
        router.get(URL).mock(return_value=httpx.Response(200, stream=endless))
        with pytest.raises(tke.DownloadError) as info:
            tke.download(URL, work / "out", progress=False, max_bytes=len(DATA))
    assert f"it sent more than the cap of {len(DATA)} bytes" in str(info.value)
    assert "--max-bytes" in str(info.value)
    assert leftovers(work) == []


def test_stated_size_over_the_cap_fails_before_reading(work: Path) -> None:
    read = []

    class Counting(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            read.append(1)
            yield DATA

    with respx.mock() as router:
        router.get(URL).mock(
            return_value=httpx.Response(
                200, headers={"Content-Length": str(1 << 40)}, stream=Counting()
            )
        )
        with pytest.raises(tke.DownloadError, match=r"the server says it is 1099511627776 bytes"):
            tke.download(URL, work / "out", progress=False, max_bytes=1 << 30)
    assert read == [] and leftovers(work) == []


def test_cap_counts_all_files_of_a_download(work: Path) -> None:
    files = [tke.FileSpec(f"f{i}", f"https://storage.test/f{i}") for i in range(3)]
    with respx.mock() as router:
        router.get(url__startswith="https://storage.test/f").mock(
            return_value=httpx.Response(200, content=DATA)
        )
        with pytest.raises(tke.DownloadError, match="over the download cap"):
            tke.fetch_many(
                files, work / "s", progress=False, budget=Budget(max_bytes=2 * len(DATA))
            )


def test_gzip_encoded_body_is_refused_not_inflated(work: Path) -> None:
    bomb = gzip.compress(b"\0" * (1 << 20))
    with respx.mock() as router:
        router.get(URL).mock(
            return_value=httpx.Response(200, content=bomb, headers={"Content-Encoding": "gzip"})
        )
        with pytest.raises(tke.DownloadError, match="Content-Encoding 'gzip'"):
            tke.download(URL, work / "out", progress=False)
    assert leftovers(work) == []


def test_deadline_covers_the_whole_download(work: Path) -> None:
    now = [0.0]
    budget = Budget(deadline_s=10.0, clock=lambda: now[0])

    class Drip(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            for _ in range(100):
                now[0] += 1.0  # a byte a "second": every read within the HTTP timeout
                yield b"x"

    with respx.mock() as router:
        router.get(URL).mock(return_value=httpx.Response(200, stream=Drip()))
        with pytest.raises(tke.DownloadError, match=r"did not finish within the 10 s deadline"):
            tke.fetch(URL, work / "f.bin", budget=budget)
    assert leftovers(work) == []


def test_deadline_stops_retries_before_sleeping_past_it(work: Path) -> None:
    now = [0.0]
    sleeps: list[float] = []
    budget = Budget(deadline_s=5.0, clock=lambda: now[0])

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with respx.mock() as router:
        router.get(URL).mock(return_value=httpx.Response(503))
        with pytest.raises(tke.DownloadError, match="deadline"):
            tke.fetch(
                URL,
                work / "f.bin",
                budget=budget,
                retry=tke.RetryPolicy(attempts=10, backoff=4.0),
                sleep=sleep,
            )
    assert sleeps == [4.0]  # the next wait (8 s) would pass the deadline


# --- resume validation --------------------------------------------------------------------------


def test_416_claiming_a_smaller_total_restarts(work: Path) -> None:
    calls: list[httpx.Request] = []
    half = len(DATA) // 2

    def server(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(
                200, headers={"Content-Length": str(len(DATA))}, stream=Dropped(DATA[:half])
            )
        if len(calls) == 2:  # "the file is only as long as what you have": a lie
            return httpx.Response(416, headers={"Content-Range": f"bytes */{half}"})
        return httpx.Response(200, content=DATA)

    with respx.mock() as router:
        router.get(URL).mock(side_effect=server)
        out = tke.download(URL, work / "out", retry=FAST, progress=False)
    assert (out / "adapter_model.safetensors").read_bytes() == DATA
    assert [c.headers.get("range") for c in calls] == [None, f"bytes={half}-", None]


def test_resume_sends_if_range_and_restarts_when_the_file_changed(work: Path) -> None:
    new = DATA[::-1]
    calls: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            headers = {"Content-Length": str(len(DATA)), "ETag": '"v1"'}
            return httpx.Response(200, headers=headers, stream=Dropped(DATA[:1000]))
        # The file changed: If-Range "v1" no longer matches, so the whole new file comes.
        assert request.headers["if-range"] == '"v1"'
        return httpx.Response(200, content=new, headers={"ETag": '"v2"'})

    with respx.mock() as router:
        router.get(URL).mock(side_effect=server)
        out = tke.download(URL, work / "out", retry=FAST, progress=False)
    assert (out / "adapter_model.safetensors").read_bytes() == new
    assert calls[1].headers["range"] == "bytes=1000-"


def test_206_of_another_version_restarts(work: Path) -> None:
    calls: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            headers = {"Content-Length": str(len(DATA)), "ETag": '"v1"'}
            return httpx.Response(200, headers=headers, stream=Dropped(DATA[:1000]))
        if len(calls) == 2:  # a broken server ignoring If-Range: the rest of v2
            headers = {"Content-Range": f"bytes 1000-{len(DATA) - 1}/{len(DATA)}", "ETag": '"v2"'}
            return httpx.Response(206, content=DATA[1000:], headers=headers)
        return httpx.Response(200, content=DATA, headers={"ETag": '"v2"'})

    with respx.mock() as router:
        router.get(URL).mock(side_effect=server)
        out = tke.download(URL, work / "out", retry=FAST, progress=False)
    assert (out / "adapter_model.safetensors").read_bytes() == DATA
    assert len(calls) == 3 and "range" not in calls[2].headers


def test_interrupted_download_resumes_on_the_next_run(work: Path) -> None:
    calls: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:  # Ctrl-C arrives mid-body
            headers = {"Content-Length": str(len(DATA)), "Last-Modified": "Mon, 01 Jan 2024"}
            return httpx.Response(
                200, headers=headers, stream=Dropped(DATA[:1000], KeyboardInterrupt())
            )
        start = int(request.headers["range"].removeprefix("bytes=").removesuffix("-"))
        headers = {"Content-Range": f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"}
        return httpx.Response(206, content=DATA[start:], headers=headers)

    with respx.mock() as router:
        router.get(URL).mock(side_effect=server)
        with pytest.raises(KeyboardInterrupt):
            tke.download(URL, work / "out", progress=False)
        (staging,) = leftovers(work)  # kept for the next run, with the .part
        assert staging.startswith(".out.download-")
        out = tke.download(URL, work / "out", progress=False)
    assert (out / "adapter_model.safetensors").read_bytes() == DATA
    assert calls[1].headers["range"] == "bytes=1000-"
    assert calls[1].headers["if-range"] == "Mon, 01 Jan 2024"
    assert leftovers(work) == ["out"]


def test_leftover_part_without_a_validator_restarts_from_zero(work: Path) -> None:
    calls: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:  # no ETag, no Last-Modified: nothing to validate a resume with
            headers = {"Content-Length": str(len(DATA))}
            return httpx.Response(
                200, headers=headers, stream=Dropped(DATA[:1000], KeyboardInterrupt())
            )
        return httpx.Response(200, content=DATA)

    with respx.mock() as router:
        router.get(URL).mock(side_effect=server)
        with pytest.raises(KeyboardInterrupt):
            tke.download(URL, work / "out", progress=False)
        out = tke.download(URL, work / "out", progress=False)
    assert (out / "adapter_model.safetensors").read_bytes() == DATA
    assert "range" not in calls[1].headers


class _Server(http.server.BaseHTTPRequestHandler):
    """A file server on 127.0.0.1 honouring Range/If-Range; ``slow`` stalls mid-body."""

    slow = True
    requests: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        type(self).requests.append(dict(self.headers))
        start = 0
        wanted = self.headers.get("Range")
        if wanted and self.headers.get("If-Range") in (None, '"v1"'):
            start = int(wanted.removeprefix("bytes=").removesuffix("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(DATA) - start))
        self.send_header("ETag", '"v1"')
        self.end_headers()
        if type(self).slow:
            self.wfile.write(DATA[: len(DATA) // 2])
            self.wfile.flush()
            time.sleep(30)
        else:
            self.wfile.write(DATA[start:])

    def log_message(self, *args: object) -> None:
        pass


def test_kill_9_then_rerun_resumes_the_part(work: Path) -> None:
    _Server.slow, _Server.requests = True, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_port}/w/adapter.bin"
    script = (
        f"import tinkerkit.export as t; t.download({url!r}, {str(work / 'out')!r}, progress=False)"
    )
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            parts = list(work.glob(".out.download-*/files/*.part"))
            if parts and parts[0].stat().st_size == len(DATA) // 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the child never wrote half the file")
        child.send_signal(signal.SIGKILL)
        child.wait()
        _Server.slow = False
        out = tke.download(url, work / "out", progress=False)
    finally:
        child.kill()
        httpd.shutdown()
    assert (out / "adapter.bin").read_bytes() == DATA
    assert _Server.requests[-1]["Range"] == f"bytes={len(DATA) // 2}-"
    assert _Server.requests[-1]["If-Range"] == '"v1"'
    assert leftovers(work) == ["out"]


def test_two_downloads_into_one_folder_do_not_share_parts(work: Path) -> None:
    from tinkerkit.export.sources import staging_folder

    with staging_folder(work / "out", URL):
        with pytest.raises(tke.DownloadError, match=r"another download into .*out is running"):
            tke.download(URL, work / "out", progress=False)
        assert len(leftovers(work)) == 1  # the first one's staging folder is untouched
    assert leftovers(work) == []


# --- redirect loops, full disk -----------------------------------------------------------------


def test_redirect_loop_is_one_line(work: Path) -> None:
    with respx.mock() as router:
        router.get(url__startswith="https://storage.test/").mock(
            return_value=httpx.Response(302, headers={"Location": URL})
        )
        result = CliRunner().invoke(
            group, ["download", URL, "--out", str(work / "out"), "--no-progress"]
        )
    line = one_line_error(result)
    assert "redirected too many times (a redirect loop)" in line and "secret" not in line
    assert leftovers(work) == []


def test_full_disk_is_one_line_and_nothing_is_left(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = open

    class Full(io.RawIOBase):
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def write(self, data: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

    def full_open(path: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
        handle = real_open(path, mode, *args, **kw)
        return Full(handle) if "w" in mode or "a" in mode else handle

    monkeypatch.setattr(fetch_module, "open", full_open, raising=False)
    files = [(f"f{i}", f"https://storage.test/f{i}") for i in range(4)]
    with respx.mock() as router:
        router.get(url__startswith="https://storage.test/").mock(
            return_value=httpx.Response(200, content=DATA)
        )
        service = _external(files)
        monkeypatch.setattr("tinkerkit.cli_export._service", lambda source, backend: service)
        result = CliRunner().invoke(
            group,
            [
                "download",
                "tinker://r/external_weights/x",
                "--out",
                str(work / "o"),
                "--no-progress",
            ],
        )
    line = one_line_error(result)
    assert "the disk is full (No space left on device); nothing was kept" in line
    assert leftovers(work) == []


def test_stated_size_larger_than_free_space_fails_before_writing(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch_module.shutil, "disk_usage", lambda path: SimpleNamespace(free=100))
    with respx.mock() as router:
        router.get(URL).mock(return_value=httpx.Response(200, content=DATA))
        with pytest.raises(tke.DownloadError, match=f"needs {len(DATA)} more bytes but only 100"):
            tke.download(URL, work / "out", progress=False)
    assert leftovers(work) == []


def _external(files: list[tuple[str, str]]) -> Any:
    urls = dict(files)
    response = SimpleNamespace(urls=urls, expires=datetime.now(UTC) + timedelta(hours=1))
    rest = SimpleNamespace(
        get_external_weights_urls=lambda path: SimpleNamespace(result=lambda: response)
    )
    return SimpleNamespace(create_rest_client=lambda: rest)
