"""Training data: load it, render chats, build datums, check and inspect them.

import tinkerkit as tk
chats = tk.data.load_chat_jsonl("chats.jsonl")            # DataError(path, line, field)
pairs = tk.data.load_preference_pairs("s3://bucket/pairs.jsonl")  # any fsspec URL, streamed
rows = tk.data.load_sql("pipeline.db", tk.data.PreferencePair, table="pairs")
datum = tk.data.chat_datum(chats[0], tok, train_on="last")
image_chat = [{"role": "user", "content": [{"type": "image", "image": "cat.png"},
                                           {"type": "text", "text": "What is it?"}]},
              {"role": "assistant", "content": "A cat."}]
datum = tk.data.chat_datum(image_chat, vl_tok)               # an ImageChunk, untrained
prompt = tk.data.chat_prompt(image_chat[:1], vl_tok)         # a ModelInput to sample from
tk.data.check_datums([datum], vocab_size=len(tok))
print(tk.data.show_datum(datum, tok))
"""

from tinkerkit.data import notes, vision
from tinkerkit.data.builders import completion_datum, preference_datums, reward_datum, rl_datum
from tinkerkit.data.chat import (
    ChatFormatError,
    chat_datum,
    chat_datums,
    chat_prompt,
    chat_prompt_tokens,
    render_chat,
)
from tinkerkit.data.datum import shifted_datum
from tinkerkit.data.display import DatumView, register_notebook_display
from tinkerkit.data.inspect import check_datums, show_datum
from tinkerkit.data.loaders import (
    iter_records,
    load_chat_jsonl,
    load_hf_dataset,
    load_preference_pairs,
    load_prompt_completions,
    load_records,
    load_rl_prompts,
    load_sql,
)
from tinkerkit.data.schemas import (
    ContentPart,
    Conversation,
    Message,
    PreferencePair,
    PromptCompletion,
    RLPrompt,
)

__all__ = [
    "ChatFormatError",
    "ContentPart",
    "Conversation",
    "DatumView",
    "Message",
    "PreferencePair",
    "PromptCompletion",
    "RLPrompt",
    "chat_datum",
    "chat_datums",
    "chat_prompt",
    "chat_prompt_tokens",
    "check_datums",
    "completion_datum",
    "iter_records",
    "load_chat_jsonl",
    "load_hf_dataset",
    "load_preference_pairs",
    "load_prompt_completions",
    "load_records",
    "load_rl_prompts",
    "load_sql",
    "notes",
    "preference_datums",
    "render_chat",
    "reward_datum",
    "rl_datum",
    "shifted_datum",
    "show_datum",
    "vision",
]

# In a Jupyter kernel, a bare Datum at the end of a cell renders as HTML.
register_notebook_display()
