"""Varied strings to compare tokenizers on: prose, code, numbers, whitespace runs,
scripts of many languages, emoji, combining marks, special-looking text."""

from __future__ import annotations

import random

_PIECES = [
    "Hello, world!", "The quick brown fox jumps over the lazy dog.", "don't", "I'll", "we've",
    "THEY'RE", "it's", "  leading", "trailing  ", "tab\there", "line\nbreak", "\r\n", "\n\n\n",
    "    indented code", "def f(x):\n    return x ** 2  # square", "for (int i = 0; i < n; ++i) {}",
    "print('héllo')", "SELECT * FROM t WHERE a >= 10;", "<div class=\"x\">&amp;</div>",
    "1234567890", "3.14159", "1e-9", "-42", "0x1F", "2024-06-01T12:00:00Z", "$1,000.50",
    "100%", "日本語のテキスト", "中文字符测试", "한국어 문장", "Русский текст", "Ελληνικά",
    "العربية", "עברית", "हिन्दी", "ไทย", "Tiếng Việt", "café naïve résumé", "Ünïcödé ßtraße",
    "e\u0301", "a\u0308o\u0308", "ﬁ ligature", "Å Å", "🚀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "…", "—",
    "«quotes»", "“smart”", "¿Qué?", "¡Hola!", "@user", "#tag", "https://example.com/a?b=c",
    "user@example.com", "C:\\path\\to\\file", "~/.bashrc", "a  b   c    d", " ", "  ", "\t\t",
    "x" * 40, "ab" * 30, "!!!???", "...", "---", "===", "<|not_special|>", "<tag>", "</tag>",
    "CamelCaseIdentifier", "snake_case_name", "kebab-case-name", "ALLCAPS", "MiXeD",
    "λ → ∀x ∃y", "∑ ∫ √", "½ ¾", "①②③", "\u00a0nbsp", "zero\u200bwidth", "\u3000ideographic",
]


def varied_strings(n: int = 300, seed: int = 0) -> list[str]:
    """``n`` strings: each piece alone, then random concatenations of 2-6 pieces."""
    rng = random.Random(seed)
    out = list(_PIECES)
    while len(out) < n:
        k = rng.randint(2, 6)
        glue = rng.choice(["", " ", "\n", "  ", "\t", ", "])
        out.append(glue.join(rng.choice(_PIECES) for _ in range(k)))
    return out[:n]
