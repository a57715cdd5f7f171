"""Chat templates of real model families, rebuilt offline on the byte tokenizer."""

from tinkerkit.models.tokenizer import build_byte_tokenizer

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}"
    "{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

QWEN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def llama3_tokenizer():
    specials = (
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
    )
    return build_byte_tokenizer(
        specials, LLAMA3_TEMPLATE, bos="<|begin_of_text|>", eos="<|eot_id|>"
    )


def qwen_tokenizer():
    specials = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
    return build_byte_tokenizer(
        specials, QWEN_TEMPLATE, bos=None, eos="<|im_end|>", pad="<|endoftext|>"
    )


def plain_tokenizer():
    return build_byte_tokenizer(("</s>",), None, bos=None, eos="</s>")
