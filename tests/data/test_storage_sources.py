"""Data at a URL: an S3-compatible server (moto's, on loopback, started once for the
module) read through fsspec/s3fs, streamed, with the same line-numbered errors as files."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

import tinkerkit as tk  # noqa: E402
from tinkerkit.cli import main  # noqa: E402
from tinkerkit.data import storage  # noqa: E402
from tinkerkit.data.schemas import Conversation  # noqa: E402
from tinkerkit.errors import DataError  # noqa: E402
from tinkerkit.train import preference_data, rl_sampling, sft_data  # noqa: E402

BUCKET = "pipeline"


def _chat(i: int) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": f"Code word {i}?"},
            {"role": "assistant", "content": f"w{i}x"},
        ]
    }


def _jsonl(records: list[Any]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    """A real S3 API on a free loopback port; every AWS setting points at it (dummy
    keys, no profile files, no instance metadata), so nothing can reach AWS."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        env.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
        env.setenv("AWS_ENDPOINT_URL_S3", endpoint)
        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
        fs.mkdir(BUCKET)
        objects = {
            "chats.jsonl": _jsonl([_chat(i) for i in range(6)]),
            "pairs.jsonl": _jsonl([{"prompt": "2+2?", "chosen": "4", "rejected": "5"}] * 3),
            "prompts.jsonl": _jsonl([{"prompt": "1+1?", "answer": "2"}]),
            "completions.jsonl": _jsonl([{"prompt": "Hi", "completion": "there"}] * 2),
            "bad.jsonl": _jsonl(
                [
                    _chat(0),
                    _chat(1),
                    {
                        "messages": [
                            {"role": "user", "content": "q"},
                            {"role": "bot", "content": "a"},
                        ]
                    },
                ]
            ),
            "chats.json": json.dumps([_chat(0), _chat(1)], indent=1).encode(),
            "big.jsonl": _jsonl([_chat(i) for i in range(24_000)]),
        }
        for key, data in objects.items():
            fs.pipe(f"{BUCKET}/{key}", data)
        fs.endpoint = endpoint  # type: ignore[attr-defined]
        try:
            yield fs
        finally:
            server.stop()


def test_chats_from_s3_with_the_endpoint_from_the_environment(s3: Any) -> None:
    chats = tk.data.load_chat_jsonl(f"s3://{BUCKET}/chats.jsonl")
    assert [c.messages[1].content for c in chats] == [f"w{i}x" for i in range(6)]
    assert len(tk.data.load_chat_jsonl(f"s3://{BUCKET}/chats.json")) == 2


def test_storage_options_name_the_endpoint(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    pairs = tk.data.load_preference_pairs(
        f"s3://{BUCKET}/pairs.jsonl", storage_options={"endpoint_url": s3.endpoint}
    )
    assert [(p.chosen, p.rejected) for p in pairs] == [("4", "5")] * 3


def test_a_bad_line_names_the_url_and_the_line(s3: Any) -> None:
    with pytest.raises(DataError) as caught:
        tk.data.load_chat_jsonl(f"s3://{BUCKET}/bad.jsonl")
    assert str(caught.value).startswith(
        f"s3://{BUCKET}/bad.jsonl:3: field 'messages[1].role': unknown role 'bot'"
    )
    assert (caught.value.path, caught.value.line) == (f"s3://{BUCKET}/bad.jsonl", 3)
    kept = tk.data.load_chat_jsonl(f"s3://{BUCKET}/bad.jsonl", errors="skip")
    assert len(kept) == 2


def test_a_missing_object_is_named(s3: Any) -> None:
    with pytest.raises(DataError, match=rf"^s3://{BUCKET}/nope\.jsonl: no such file$"):
        tk.data.load_chat_jsonl(f"s3://{BUCKET}/nope.jsonl")


def test_records_are_streamed_not_read_whole(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    handles: list[Any] = []
    real_open = storage.open_url

    @contextmanager
    def spy(url: str, options: Any = None) -> Iterator[Any]:
        with real_open(url, options) as handle:
            handles.append(handle)
            yield handle

    monkeypatch.setattr(storage, "open_url", spy)
    size = s3.size(f"{BUCKET}/big.jsonl")
    records = tk.data.iter_records(f"s3://{BUCKET}/big.jsonl", Conversation)
    first = next(records)
    assert first.messages[1].content == "w0x"
    assert size > 2 * 2**20 and handles[0].tell() <= 2**20  # one bounded chunk, not the file
    assert sum(1 for _ in records) == 23_999


def test_a_signed_https_url_reads_and_errors_hide_the_signature(s3: Any) -> None:
    good = s3.url(f"{BUCKET}/chats.jsonl", expires=600)
    assert good.startswith("http://127.0.0.1") and "Signature" in good
    assert len(tk.data.load_chat_jsonl(good)) == 6
    bad = s3.url(f"{BUCKET}/bad.jsonl", expires=600)
    with pytest.raises(DataError) as caught:
        tk.data.load_chat_jsonl(bad)
    message = str(caught.value)
    assert message.startswith(f"{s3.endpoint}/{BUCKET}/bad.jsonl?...:3: field 'messages[1].role'")
    assert "Signature" not in message and "testing" not in message


def test_every_loop_source_takes_a_url(s3: Any) -> None:
    records = sft_data.load(f"s3://{BUCKET}/chats.jsonl")
    assert len(records) == 6 and all(isinstance(r, Conversation) for r in records)
    completions = sft_data.load(f"s3://{BUCKET}/completions.jsonl")
    assert [(r.prompt, r.completion) for r in completions] == [("Hi", "there")] * 2  # type: ignore[union-attr]
    assert len(preference_data.load_pairs(f"s3://{BUCKET}/pairs.jsonl")) == 3
    prompts = rl_sampling.load(f"s3://{BUCKET}/prompts.jsonl")
    assert prompts[0].fields == {"answer": "2"}


def test_the_cli_trains_on_an_s3_url(s3: Any, tmp_path: Path) -> None:
    args = ["sft", "--data", f"s3://{BUCKET}/chats.jsonl", "--backend", "mock"]
    args += ["--epochs", "1", "--batch-size", "3", "--rank", "4", "--log-dir", str(tmp_path / "r")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "done: 2 steps" in result.output
    bad = CliRunner().invoke(main, [*args[:2], f"s3://{BUCKET}/bad.jsonl", *args[3:]])
    assert bad.exit_code != 0
    assert f"s3://{BUCKET}/bad.jsonl:3: field 'messages[1].role'" in bad.output


def test_without_fsspec_a_url_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(ImportError) as caught:
        tk.data.load_chat_jsonl("s3://bucket/chats.jsonl")
    message = str(caught.value)
    assert "\n" not in message and "pip install 'tinkerkit[storage]'" in message
    assert "s3://bucket/chats.jsonl" in message


def test_a_signed_url_never_reaches_the_run_record():
    from tinkerkit.train.session import public_config

    signed = "https://me:pw@host/chats.jsonl?X-Amz-Signature=secret"
    record = public_config(tk.sft.Config(data=signed, eval_data="sqlite:///x.db?table=held"))
    assert record["data"] == "https://host/chats.jsonl?..."
    assert record["eval_data"] == "sqlite:///x.db?table=held"  # a table name is no secret
