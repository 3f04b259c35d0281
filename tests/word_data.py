"""Small classification data the tests write for themselves: two classes told apart by their words alone,
so that even a frozen random trunk (tiny-bert, tiny-llama) gives separable features and a few steps of
training visibly lower the loss."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = {"pos": ["great", "good", "nice"], "neg": ["awful", "bad", "poor"]}


def write_word_sentiment(path: Path, per_label: int = 30, template: str = "{a} {b}") -> Path:
    """`per_label` rows of each label as JSON lines ({"text", "label"}), alternating labels; the text is
    `template` filled with two of the label's words, every pair in turn."""
    rows = [
        {"text": template.format(a=WORDS[label][i % 3], b=WORDS[label][(i // 3) % 3]), "label": label}
        for i in range(per_label)
        for label in ("pos", "neg")
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
