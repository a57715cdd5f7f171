"""Downloads over (mocked) HTTP: resume, retries, expiry, checksums, no leftovers."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import respx

import tinkerkit.export as tke
from tests.export.helpers import leftovers
from tinkerkit.export.batch import FileSpec, fetch_many

URL = "https://storage.test/bucket/adapter_model.safetensors?X-Goog-Signature=secret"
DATA = bytes(range(256)) * 400  # 102400 bytes
FAST = tke.RetryPolicy(attempts=4, backoff=0.0)


class DroppedStream(httpx.SyncByteStream):
    """Sends some bytes, then the connection breaks."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Any:
        yield self.data
        raise httpx.ReadError("connection reset by peer")


def ranged(data: bytes, request: httpx.Request, **headers: str) -> httpx.Response:
    """A well-behaved server: honours ``Range: bytes=N-``."""
    wanted = request.headers.get("range")
    if wanted:
        start = int(wanted.removeprefix("bytes=").removesuffix("-"))
        return httpx.Response(
            206,
            content=data[start:],
            headers={"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}", **headers},
        )
    return httpx.Response(200, content=data, headers=headers)


@pytest.mark.parametrize("how", ["error", "short"])
def test_interrupted_download_resumes_with_range(work: Path, how: str) -> None:
    calls: list[httpx.Request] = []
    half = len(DATA) // 2

    def server(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            headers = {"Content-Length": str(len(DATA))}
            if how == "error":  # the connection breaks mid-body
                return httpx.Response(200, headers=headers, stream=DroppedStream(DATA[:half]))
            # the server closes early: fewer bytes than Content-Length
            return httpx.Response(200, headers=headers, stream=httpx.ByteStream(DATA[:half]))
        return ranged(DATA, request)

    with respx.mock() as router:
        router.get(URL).mock(side_effect=server)
        out = tke.download(URL, work / "out", retry=FAST, progress=False)

    assert (out / "adapter_model.safetensors").read_bytes() == DATA
    assert len(calls) == 2
    assert "range" not in calls[0].headers
    assert calls[1].headers["range"] == f"bytes={half}-"
    assert leftovers(work) == ["out"]  # no staging folder, no .part


def test_server_ignoring_range_restarts_from_zero(work: Path) -> None:
    calls = []

    def server(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(
                200, headers={"Content-Length": str(len(DATA))}, stream=DroppedStream(DATA[:999])
            )
        return httpx.Response(200, content=DATA)  # 200 despite the Range header

    with respx.mock() as router:
        router.get(URL).mock(side_effect=server)
        out = tke.download(URL, work / "out", retry=FAST, progress=False)
    assert (out / "adapter_model.safetensors").read_bytes() == DATA


def test_5xx_is_retried_then_succeeds(work: Path) -> None:
    responses = iter([httpx.Response(503), httpx.Response(502), httpx.Response(200, content=DATA)])
    sleeps: list[float] = []
    with respx.mock() as router:
        route = router.get(URL).mock(side_effect=lambda request: next(responses))
        path = tke.fetch(
            URL, work / "f.bin", retry=tke.RetryPolicy(backoff=0.25), sleep=sleeps.append
        )
    assert path.read_bytes() == DATA
    assert route.call_count == 3
    assert sleeps == [0.25, 0.5]  # exponential backoff


def test_timeouts_and_connection_errors_are_retried(work: Path) -> None:
    effects = iter([httpx.ConnectTimeout("slow"), httpx.ConnectError("refused")])

    def server(request: httpx.Request) -> httpx.Response:
        exc = next(effects, None)
        if exc is not None:
            raise exc
        return httpx.Response(200, content=DATA)

    with respx.mock() as router:
        router.get(URL).mock(side_effect=server)
        path = tke.fetch(URL, work / "f.bin", retry=FAST)
    assert path.read_bytes() == DATA


@pytest.mark.parametrize("status", [403, 410])
def test_expired_url_says_to_request_new_urls(work: Path, status: int) -> None:
    with respx.mock() as router:
        route = router.get(URL).mock(return_value=httpx.Response(status))
        with pytest.raises(tke.UrlExpiredError) as info:
            tke.download(URL, work / "out", retry=FAST, progress=False)
    message = str(info.value)
    assert f"HTTP {status}" in message and "request fresh ones" in message
    assert "secret" not in message  # the signature in the query string is not echoed
    assert route.call_count == 1  # not retried: it cannot get better
    assert leftovers(work) == []


def test_expiry_in_the_past_fails_before_any_request(work: Path) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    with respx.mock(assert_all_called=False) as router:
        route = router.get(URL).mock(return_value=httpx.Response(200, content=DATA))
        with pytest.raises(tke.UrlExpiredError, match="expired at"):
            tke.fetch(URL, work / "f.bin", expires=past)
    assert route.call_count == 0


def test_persistent_failure_leaves_nothing_behind(work: Path) -> None:
    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"Content-Length": str(len(DATA))}, stream=DroppedStream(DATA[:100])
        )

    with respx.mock() as router:
        route = router.get(URL).mock(side_effect=server)
        with pytest.raises(tke.DownloadError, match="gave up after 4 attempts"):
            tke.download(URL, work / "out", retry=FAST, progress=False)
    assert route.call_count == 4
    assert leftovers(work) == []  # no out dir, no staging dir, no .part


def test_md5_from_x_goog_hash_is_checked(work: Path) -> None:
    good = base64.b64encode(hashlib.md5(DATA).digest()).decode()
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with respx.mock() as router:
        router.get(URL).mock(
            return_value=httpx.Response(
                200, content=DATA, headers={"x-goog-hash": f"crc32c=AAAAAA==,md5={good}"}
            )
        )
        assert tke.fetch(URL, work / "ok.bin").read_bytes() == DATA
    with respx.mock() as router:
        router.get(URL).mock(
            return_value=httpx.Response(200, content=DATA, headers={"x-goog-hash": f"md5={bad}"})
        )
        with pytest.raises(tke.ChecksumError, match="md5 checksum mismatch"):
            tke.download(URL, work / "out", progress=False)
    assert leftovers(work) == ["ok.bin"]


def test_given_sha256_and_etag_md5(work: Path) -> None:
    etag = f'"{hashlib.md5(DATA).hexdigest()}"'
    with respx.mock() as router:
        router.get(URL).mock(side_effect=lambda r: ranged(DATA, r, ETag=etag))
        tke.download(URL, work / "a", sha256=hashlib.sha256(DATA).hexdigest(), progress=False)
        with pytest.raises(tke.ChecksumError, match="sha256"):
            tke.download(URL, work / "b", sha256="0" * 64, progress=False)
    s3 = {"ETag": '"' + "0" * 32 + '"', "x-amz-request-id": "R1"}
    with respx.mock() as router:
        router.get(URL).mock(return_value=httpx.Response(200, content=DATA, headers=s3))
        with pytest.raises(tke.ChecksumError, match="md5"):
            tke.download(URL, work / "c", progress=False)
    assert leftovers(work) == ["a"]


@pytest.mark.parametrize(
    "headers",
    [
        {"ETag": '"' + "0" * 32 + '"'},  # Starlette (tinkerkit serve): md5 of mtime-size
        {
            "ETag": '"' + "0" * 32 + '"',
            "x-amz-request-id": "R",
            "x-amz-server-side-encryption": "aws:kms",
        },
        {"ETag": 'W/"' + "0" * 32 + '"', "x-amz-request-id": "R"},
    ],
)
def test_etags_that_are_not_content_md5s_are_not_checked(
    work: Path, headers: dict[str, str]
) -> None:
    with respx.mock() as router:
        router.get(URL).mock(return_value=httpx.Response(200, content=DATA, headers=headers))
        out = tke.download(URL, work / "c", progress=False)
    assert (out / "adapter_model.safetensors").read_bytes() == DATA


def test_404_is_not_retried(work: Path) -> None:
    with respx.mock() as router:
        route = router.get(URL).mock(return_value=httpx.Response(404))
        with pytest.raises(tke.DownloadError, match="HTTP 404"):
            tke.download(URL, work / "out", retry=FAST, progress=False)
    assert route.call_count == 1


class FakeRest:
    """The tinker 0.38 RestClient surface download() uses, with signed https URLs."""

    def __init__(self, files: dict[str, bytes], expires_in: float = 3600) -> None:
        self.files = files
        self.expires_in = expires_in
        self.signed = 0

    def get_external_weights_urls(self, path: str) -> Any:
        self.signed += 1
        urls = {n: f"https://storage.test/ext/{n}?sig={self.signed}" for n in self.files}
        expires = datetime.now(UTC) + timedelta(seconds=self.expires_in)
        return SimpleNamespace(result=lambda: SimpleNamespace(urls=urls, expires=expires))


def test_external_weights_are_fetched_concurrently(work: Path) -> None:
    files = {
        "adapter_model.safetensors": DATA,
        "adapter_config.json": b'{"r": 8}',
        "sub/extra.txt": b"x",
    }
    rest = FakeRest(files)
    service = SimpleNamespace(create_rest_client=lambda: rest)
    with respx.mock() as router:
        for name, body in files.items():
            router.get(url__startswith=f"https://storage.test/ext/{name}?").mock(
                return_value=httpx.Response(200, content=body)
            )
        out = tke.download(
            "tinker://run-1/external_weights/final", work / "w", service=service, progress=False
        )
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


def test_expired_urls_are_signed_again_once(work: Path) -> None:
    rest = FakeRest({"a.bin": DATA})
    service = SimpleNamespace(create_rest_client=lambda: rest)
    with respx.mock() as router:
        router.get(url__regex=r"sig=1$").mock(return_value=httpx.Response(403))
        router.get(url__regex=r"sig=2$").mock(return_value=httpx.Response(200, content=DATA))
        out = tke.download(
            "tinker://run-1/external_weights/final", work / "w", service=service, progress=False
        )
    assert (out / "a.bin").read_bytes() == DATA and rest.signed == 2


def test_unsafe_file_names_in_a_listing_are_refused(work: Path) -> None:
    with pytest.raises(tke.DownloadError, match="would leave the output folder"):
        fetch_many([FileSpec("../evil", "https://storage.test/x")], work / "s", progress=False)
    assert leftovers(work) == []
