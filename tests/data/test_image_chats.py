"""Chats with image parts → datums and sampling prompts (issue 24): each image is an
``ImageChunk`` where the template wrote ``<|image_pad|>``, its positions target 0 and
weight 0, and the datum is the one tinker-cookbook's ``qwen3_vl_instruct`` renderer builds."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from tinker import types

import tinkerkit as tk
from tests.images import shape_png
from tinkerkit.data.display import datum_html
from tinkerkit.data.vision import tokenizer_vision
from tinkerkit.errors import ChatFormatError, DataError, DatumCheckError
from tinkerkit.models.stand_ins import ModelNames
from tinkerkit.models.tokenizer import byte_tokenizer, vl_byte_tokenizer
from tinkerkit.rules.images import Processor, Vision

QWEN_VL = "Qwen/Qwen3-VL-30B-A3B-Instruct"


def ids(tok, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def picture(width: int = 64, height: int = 48, seed: int = 0):
    """A noisy RGB PIL image (so its JPEG bytes say something about its pixels)."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def jpeg(image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG")
    return out.getvalue()


def image_chat(image, question: str = "What?", answer: str = "Red."):
    return [
        {
            "role": "user",
            "content": [{"type": "image", "image": image}, {"type": "text", "text": question}],
        },
        {"role": "assistant", "content": answer},
    ]


def targets_weights(datum: types.Datum) -> tuple[list[int], list[float]]:
    return (
        datum.loss_fn_inputs["target_tokens"].tolist(),
        datum.loss_fn_inputs["weights"].tolist(),
    )


# --- tinkerkit/tiny-vl --------------------------------------------------------------------


def test_an_image_chat_is_text_image_text_with_the_image_untrained():
    tok = vl_byte_tokenizer()
    datum = tk.data.chat_datum(image_chat(picture(64, 48)), tok)
    n = Processor().tokens(48, 64)
    assert n == 70  # 64×48 is scaled up to 320×224 (65,536-pixel floor): 20×14 patches / 4
    head = ids(tok, "<|im_start|>user\n<|vision_start|>")
    tail = ids(tok, "<|vision_end|>What?<|im_end|>\n<|im_start|>assistant\nRed.<|im_end|>\n")
    assert head[-1] == 261 and tail[0] == 263  # the image sits between start and end
    text1, image, text2 = datum.model_input.chunks
    assert isinstance(text1, types.EncodedTextChunk) and text1.tokens == head
    assert isinstance(image, types.ImageChunk)
    assert (image.format, image.expected_tokens, image.data) == ("jpeg", n, jpeg(picture(64, 48)))
    assert isinstance(text2, types.EncodedTextChunk) and text2.tokens == tail[:-1]
    targets, weights = targets_weights(datum)
    sequence = [*head, *[0] * n, *tail]
    assert targets == sequence[1:]
    assert datum.model_input.length == len(targets) == len(weights) == len(head) + n + len(tail) - 1
    answer = ids(tok, "Red.<|im_end|>")
    assert weights == [0.0] * (len(targets) - len(answer) - 1) + [1.0] * len(answer) + [0.0]
    # every image position: target 0, weight 0
    assert targets[len(head) - 1 : len(head) - 1 + n] == [0] * n
    assert weights[len(head) - 1 : len(head) - 1 + n] == [0.0] * n


def test_chat_datums_and_all_assistant_turns_with_images_in_two_turns():
    tok = vl_byte_tokenizer()
    chat = [
        *image_chat(picture(64, 64, seed=1), "A?", "one"),
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "B?"},
                {"type": "image", "image": picture(32, 96, 2)},
            ],
        },
        {"role": "assistant", "content": "two"},
    ]
    single = tk.data.chat_datum(chat, tok, train_on="all_assistant")
    (batched,) = tk.data.chat_datums([chat], tok, train_on="all_assistant")
    for datum in (single, batched):
        kinds = [chunk.type for chunk in datum.model_input.chunks]
        assert kinds == ["encoded_text", "image", "encoded_text", "image", "encoded_text"]
        sizes = [c.expected_tokens for c in datum.model_input.chunks if c.type == "image"]
        assert sizes == [Processor().tokens(64, 64), Processor().tokens(96, 32)] == [64, 70]
        targets, weights = targets_weights(datum)
        trained = [t for t, w in zip(targets, weights, strict=True) if w]
        assert tok.decode(trained) == "one<|im_end|>two<|im_end|>"
    assert targets_weights(single) == targets_weights(batched)
    assert single.model_input == batched.model_input


def test_vision_overrides_the_image_processor():
    """A model whose processor has 14-px patches and a 3,136-pixel floor (Qwen2-VL's)."""
    processor = Processor(patch_size=14, min_pixels=3136)
    chat = image_chat(picture(64, 48))
    datum = tk.data.chat_datum(chat, vl_byte_tokenizer(), vision=Vision(262, 261, 263, processor))
    assert processor.tokens(48, 64) == 4  # 64×48 → 56×56 pixels → 4×4 patches / 4
    assert datum.model_input.chunks[1].expected_tokens == 4
    prompt = tk.data.chat_prompt(
        chat[:1], vl_byte_tokenizer(), vision=Vision(262, 261, 263, processor)
    )
    assert prompt.chunks[1] == datum.model_input.chunks[1]


def test_text_only_chats_are_unchanged_by_list_content():
    """A content list of text parts is the joined string: the same datum, token for token."""
    tok = byte_tokenizer()
    as_text = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Yo"}]
    as_parts = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Yo"}]},
    ]
    a, b = tk.data.chat_datum(as_text, tok), tk.data.chat_datum(as_parts, tok)
    assert a.model_input.to_ints() == b.model_input.to_ints()
    assert targets_weights(a) == targets_weights(b)


def test_max_length_counts_image_positions_and_truncation_drops_whole_images():
    tok = vl_byte_tokenizer()
    chat = [
        {"role": "user", "content": [{"type": "image", "image": picture(64, 64)}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "again?"},
        {"role": "assistant", "content": "yes"},
    ]
    full = tk.data.chat_datum(chat, tok)
    length = full.model_input.length + 1  # the rendered sequence, images included
    with pytest.raises(ChatFormatError, match=f"renders to {length} tokens \\(images included\\)"):
        tk.data.chat_datum(chat, tok, max_length=length - 5)
    # a cut of 10 positions lands inside the image (it starts at position 7): all of it goes
    cut = tk.data.chat_datum(chat, tok, max_length=length - 10, truncate="left")
    assert [c.type for c in cut.model_input.chunks] == ["encoded_text"]
    assert cut.model_input.length == length - 7 - 64 - 1
    assert targets_weights(cut)[1] == targets_weights(full)[1][-cut.model_input.length :]


# --- the same datum as tinker-cookbook's renderer -----------------------------------------


@pytest.fixture(scope="module")
def cookbook_vl(tmp_path_factory):
    """The Qwen3-VL catalogue tokenizer and the cookbook's ``qwen3_vl_instruct`` renderer
    with the PIL Qwen2-VL image processor of ``Processor().config()`` (offline)."""
    renderers = pytest.importorskip("tinker_cookbook.renderers")
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("qwen-vl-processor")
    (folder / "preprocessor_config.json").write_text(json.dumps(Processor().config()))
    processor = transformers.AutoImageProcessor.from_pretrained(str(folder))
    tok = ModelNames().tokenizer(QWEN_VL)
    return tok, renderers.get_renderer("qwen3_vl_instruct", tok, image_processor=processor)


def _merged(model_input: types.ModelInput) -> list[tuple]:
    """Chunks with neighbouring text chunks joined (the cookbook keeps one per message
    part; the service reads them as one sequence either way)."""
    out: list[tuple] = []
    for chunk in model_input.chunks:
        if isinstance(chunk, types.EncodedTextChunk):
            if out and out[-1][0] == "text":
                out[-1] = ("text", out[-1][1] + list(chunk.tokens))
            else:
                out.append(("text", list(chunk.tokens)))
        else:
            assert isinstance(chunk, types.ImageChunk)
            out.append(("image", chunk.format, chunk.expected_tokens, chunk.data))
    return out


COOKBOOK_CHATS = {
    "system-image-question": (
        [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": picture(100, 60, seed=3)},
                    {"type": "text", "text": "What colour dominates?"},
                ],
            },
            {"role": "assistant", "content": "None; it is noise."},
        ],
        "last",
        "LAST_ASSISTANT_MESSAGE",
    ),
    "two-turns-two-images": (
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare "},
                    {"type": "image", "image": picture(64, 64, seed=4)},
                    {"type": "text", "text": " and "},
                    {"type": "image", "image": picture(200, 120, seed=5)},
                ],
            },
            {"role": "assistant", "content": "The second is wider."},
            {"role": "user", "content": [{"type": "image", "image": picture(48, 300, seed=6)}]},
            {"role": "assistant", "content": "Tall."},
        ],
        "all_assistant",
        "ALL_ASSISTANT_MESSAGES",
    ),
}


@pytest.mark.parametrize("case", list(COOKBOOK_CHATS))
def test_the_datum_is_the_cookbooks(cookbook_vl, case):
    """Same chunks, text tokens, image bytes, expected_tokens, targets and weights as
    ``renderer.build_supervised_example`` + ``datum_from_model_input_weights``, but for one
    trailing position: the chat template (Qwen3-VL's published one) ends the last turn
    with ``<|im_end|>\\n``, the renderer stops at ``<|im_end|>`` (the next header carries
    the "\\n"). Our datum keeps the template's rendering so that a chat with images and
    one without are rendered by the same rule (text-only datums are as before): its
    model_input has the final ``<|im_end|>`` as one more input token, whose target "\\n"
    has weight 0, so the loss and every trained logprob are the cookbook's."""
    from tinker_cookbook.renderers import TrainOnWhat
    from tinker_cookbook.supervised.common import datum_from_model_input_weights

    tok, renderer = cookbook_vl
    messages, train_on, theirs_train_on = COOKBOOK_CHATS[case]
    model_input, weights = renderer.build_supervised_example(
        messages, train_on_what=getattr(TrainOnWhat, theirs_train_on)
    )
    theirs = datum_from_model_input_weights(model_input, weights)
    ours = tk.data.chat_datum(messages, tok, train_on=train_on)

    mine, cookbook = _merged(ours.model_input), _merged(theirs.model_input)
    assert [c[0] for c in mine] == [c[0] for c in cookbook]
    im_end, newline = ids(tok, "<|im_end|>\n")
    for a, b in zip(mine[:-1], cookbook[:-1], strict=True):
        assert a == b  # text tokens; images: format, expected_tokens and the JPEG bytes
    assert mine[-1][1] == cookbook[-1][1] + [im_end]
    images = [
        p["image"]
        for m in messages
        if isinstance(m["content"], list)
        for p in m["content"]
        if p["type"] == "image"
    ]
    expected = [Processor().tokens(i.height, i.width) for i in images]
    assert [c[2] for c in mine if c[0] == "image"] == expected
    if case == "system-image-question":
        assert expected == [77]  # 100×60 → 352×224 pixels → 22×14 patches → 77 tokens

    our_targets, our_weights = targets_weights(ours)
    their_targets, their_weights = targets_weights(theirs)
    assert our_targets[:-1] == their_targets
    assert our_weights[:-1] == their_weights
    assert (our_targets[-1], our_weights[-1]) == (newline, 0.0)
    assert sum(their_weights) > 0


def test_the_qwen3_vl_prompt_is_the_cookbooks_generation_prompt(cookbook_vl):
    tok, renderer = cookbook_vl
    messages = COOKBOOK_CHATS["system-image-question"][0][:2]
    ours = tk.data.chat_prompt(messages, tok)
    assert _merged(ours) == _merged(renderer.build_generation_prompt(messages))


# --- where images come from ---------------------------------------------------------------


def test_every_image_source_gives_the_same_chunk(tmp_path):
    tok = vl_byte_tokenizer()
    png = shape_png("square", np.random.default_rng(7), size=80)
    file = tmp_path / "pics" / "square.png"
    file.parent.mkdir()
    file.write_bytes(png)
    sources = {
        "path": str(file),
        "Path": file,
        "bytes": png,
        "file-url": file.as_uri(),
        "data-url": "data:image/png;base64," + base64.b64encode(png).decode(),
    }
    expected = types.ImageChunk(data=png, format="png", expected_tokens=Processor().tokens(80, 80))
    assert expected.expected_tokens == 64  # 80×80 → 256×256 → 16×16 patches → 64 tokens
    for name, source in sources.items():
        chunk = tk.data.chat_datum(image_chat(source), tok).model_input.chunks[1]
        assert chunk == expected, name

    (tmp_path / "chats.jsonl").write_text(
        json.dumps({"messages": image_chat("pics/square.png")}) + "\n"
    )
    (chat,) = tk.data.load_chat_jsonl(tmp_path / "chats.jsonl")
    assert chat.messages[0].content[0].image == str(file)  # read from the file's folder
    from_file = tk.data.chat_datum(chat, tok)
    assert from_file.model_input.chunks[1] == expected
    assert targets_weights(from_file) == targets_weights(tk.data.chat_datum(image_chat(png), tok))

    # a PIL image is sent as JPEG, as tinker-cookbook sends it
    from PIL import Image

    pil = Image.open(io.BytesIO(png))
    chunk = tk.data.chat_datum(image_chat(pil), tok).model_input.chunks[1]
    assert (chunk.format, chunk.expected_tokens, chunk.data) == ("jpeg", 64, jpeg(pil))


# --- bad input ----------------------------------------------------------------------------


def test_a_missing_image_file_names_the_file_line_and_field(tmp_path):
    good = json.dumps({"messages": image_chat("data:image/png;base64,AAAA")})
    bad = json.dumps({"messages": image_chat("gone.png")})
    (tmp_path / "chats.jsonl").write_text(good + "\n" + bad + "\n")
    with pytest.raises(DataError) as caught:
        tk.data.load_chat_jsonl(tmp_path / "chats.jsonl")
    assert str(caught.value) == (
        f"{tmp_path / 'chats.jsonl'}:2: field 'messages[0].content[0].image': no such image "
        f"file: {tmp_path / 'gone.png'} (relative paths are read from the data file's folder)"
    )
    with pytest.raises(
        ChatFormatError, match=r"messages\[0\]\.content\[0\]: no such image file: nowhere\.png"
    ):
        tk.data.chat_datum(image_chat("nowhere.png"), vl_byte_tokenizer())


@pytest.mark.parametrize(
    ("part", "field", "message"),
    [
        (
            {"type": "video", "video": "a.mp4"},
            "messages[0].content[0].type",
            "Input should be 'text' or 'image'",
        ),
        ({"type": "image"}, "messages[0].content[0]", "an image part needs its 'image' field"),
        (
            {"type": "text", "text": "a", "image": "b.png"},
            "messages[0].content[0]",
            "a text part has no 'image' field",
        ),
        (
            {"type": "image", "image": 3},
            "messages[0].content[0].image",
            "an image must be a path, a URL",
        ),
    ],
)
def test_malformed_parts_name_their_field(tmp_path, part, field, message):
    record = {
        "messages": [{"role": "user", "content": [part]}, {"role": "assistant", "content": "x"}]
    }
    (tmp_path / "c.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(DataError, match=re.escape(f"c.jsonl:1: field '{field}'")) as caught:
        tk.data.load_chat_jsonl(tmp_path / "c.jsonl")
    assert message in str(caught.value)


def test_images_for_a_text_only_tokenizer_are_refused():
    with pytest.raises(ChatFormatError) as caught:
        tk.data.chat_datum(image_chat(picture()), byte_tokenizer())  # tinkerkit/tiny's
    assert str(caught.value) == (
        "messages[0].content[0] is an image, but this tokenizer has no <|image_pad|> token: "
        "its model reads text only. Use a vision model's tokenizer (tinkerkit/tiny-vl, "
        "Qwen/Qwen3-VL-30B-A3B-Instruct or a Qwen3.5 model), or remove the image parts."
    )
    with pytest.raises(
        ChatFormatError, match=r"^conversation 1: messages\[0\]\.content\[0\] is an image"
    ):
        tk.data.chat_datums([image_chat("x")[1:], image_chat(picture())], byte_tokenizer())


def test_token_lists_cannot_carry_images():
    with pytest.raises(ChatFormatError, match=r"tk\.data\.chat_prompt$"):
        tk.data.chat_prompt_tokens(image_chat(picture())[:1], vl_byte_tokenizer())
    with pytest.raises(ChatFormatError, match="a list of token ids cannot hold"):
        tk.data.render_chat(image_chat(picture()), vl_byte_tokenizer())


# --- inspecting and checking --------------------------------------------------------------


def test_show_datum_shows_an_image_as_one_placeholder():
    tok = vl_byte_tokenizer()
    datum = tk.data.chat_datum(image_chat(picture(64, 48)), tok)
    n_targets = datum.model_input.length
    assert str(tk.data.show_datum(datum, tok, color=False)) == (
        f"[{n_targets} targets, 5 trained]\n"
        "<|im_start|>user\n<|vision_start|>[image 64×48, 70 tokens]<|vision_end|>What?<|im_end|>\n"
        "<|im_start|>assistant\n⟦Red.<|im_end|>⟧\n"
    )
    page = datum_html(datum, lambda t: tok.decode([t]))
    assert page.count("[image 64×48, 70 tokens]") == 1
    assert 'title="image, 70 positions (weight 0)"' in page


def test_check_datums_accepts_image_datums_and_checks_their_counts_given_a_vision():
    tok = vl_byte_tokenizer()
    datum = tk.data.chat_datum(image_chat(picture(64, 48)), tok)
    tk.data.check_datums([datum], vocab_size=len(tok))
    tk.data.check_datums([datum], vocab_size=len(tok), vision=tokenizer_vision(tok))
    assert tokenizer_vision(tok) == Vision(262, 261, 263)

    head, image, tail = datum.model_input.chunks
    miscounted = types.ImageChunk(data=image.data, format="jpeg", expected_tokens=69)
    corrupt = types.ImageChunk(data=b"no picture", format="jpeg", expected_tokens=70)
    bad = [
        types.Datum(
            model_input=types.ModelInput(chunks=[head, chunk, tail]),
            loss_fn_inputs=datum.loss_fn_inputs,
        )
        for chunk in (miscounted, corrupt)
    ]
    with pytest.raises(DatumCheckError) as caught:
        tk.data.check_datums(bad, vocab_size=len(tok), vision=tokenizer_vision(tok))
    assert [index for index, _ in caught.value.problems] == [0, 1]
    assert "expected_tokens=69, but this model makes 70 tokens of a 64×48 image" in str(
        caught.value
    )
    with pytest.raises(DatumCheckError) as caught:  # counts as given: lengths must agree
        tk.data.check_datums(bad, vocab_size=len(tok))
    problems = dict(caught.value.problems)
    assert "has shape (101,) but model_input has 100 tokens" in problems[0]
    assert "10 bytes are not a readable jpeg image" in problems[1]


# --- through the service ------------------------------------------------------------------


def test_an_image_chat_trains_and_samples_on_tiny_vl():
    tok = vl_byte_tokenizer()
    png = shape_png("circle", np.random.default_rng(0))
    chat = image_chat(png, "What shape?", "A circle.")
    datum = tk.data.chat_datum(chat, tok)
    service = tk.connect("mock")
    training = service.create_lora_training_client(
        base_model="tinkerkit/tiny-vl", rank=8, seed=3
    ).result()
    first = training.forward_backward([datum], "cross_entropy").result().metrics["loss:sum"]
    training.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    for _ in range(5):
        training.forward_backward([datum], "cross_entropy")
        training.optim_step(types.AdamParams(learning_rate=1e-2))
    after = training.forward([datum], "cross_entropy").result().metrics["loss:sum"]
    assert after < 0.05 * first  # 58.3 → 0.075 on this seed

    sampler = training.save_weights_and_get_sampling_client().result()
    prompt = tk.data.chat_prompt(chat[:1], tok)
    assert [chunk.type for chunk in prompt.chunks] == ["encoded_text", "image", "encoded_text"]
    (completion,) = tk.sample_text(sampler, chat[:1], temperature=0.0, max_tokens=12, tokenizer=tok)
    assert completion.text == "A circle."


def test_an_image_inside_a_trained_turn_is_not_trained():
    tok = vl_byte_tokenizer()
    chat = [
        {"role": "user", "content": "Draw."},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Here:"},
                {"type": "image", "image": picture(64, 64)},
            ],
        },
    ]
    datum = tk.data.chat_datum(chat, tok)
    targets, weights = targets_weights(datum)
    trained = [t for t, w in zip(targets, weights, strict=True) if w]
    assert tok.decode(trained) == "Here:<|vision_start|><|vision_end|><|im_end|>"
    assert sum(weights) == len(trained)


def test_a_prompt_file_reads_its_images_from_its_folder(tmp_path):
    from tinkerkit.data.messages import load_messages

    (tmp_path / "dot.png").write_bytes(shape_png("circle", np.random.default_rng(8)))
    (tmp_path / "prompt.json").write_text(json.dumps(image_chat("dot.png")[:1]))
    (message,) = load_messages(tmp_path / "prompt.json")
    assert message["content"][0] == {"type": "image", "image": str(tmp_path / "dot.png")}
    (tmp_path / "bad.json").write_text(json.dumps(image_chat("gone.png")[:1]))
    with pytest.raises(
        DataError, match=re.escape("bad.json: field '[0].content[0].image': no such")
    ):
        load_messages(tmp_path / "bad.json")
