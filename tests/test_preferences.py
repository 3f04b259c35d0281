"""Preference files: the accepted formats, and every bad record reported by file and line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tunebench.core.errors import DataError
from tunebench.objectives.pairs import Pair, read_pairs, split_transcripts

HH = Path("/work/shared/data/hh_rlhf/harmless-base/test.jsonl.gz")


def _write(tmp_path: Path, rows: list, name: str = "pairs.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_prompt_chosen_rejected_lines(tmp_path):
    path = _write(
        tmp_path,
        [
            {"prompt": "2 + 2 =", "chosen": " 4", "rejected": " 5"},
            "",
            {"prompt": "p", "chosen": "a", "rejected": "b", "extra": 1},
        ],
    )
    assert read_pairs(path) == [Pair("2 + 2 =", " 4", " 5"), Pair("p", "a", "b")]


def test_a_json_list_is_accepted(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([{"prompt": "q", "chosen": "yes", "rejected": "no"}]))
    assert read_pairs(path) == [Pair("q", "yes", "no")]


def test_hh_rlhf_transcripts_split_at_the_last_shared_assistant_turn(tmp_path):
    chosen = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant: Fine, thanks."
    rejected = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant: Go away."
    path = _write(tmp_path, [{"chosen": chosen, "rejected": rejected}])
    (pair,) = read_pairs(path)
    assert pair.prompt == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant:"
    assert (pair.chosen, pair.rejected) == (" Fine, thanks.", " Go away.")


def test_replies_that_share_their_first_words_keep_them(tmp_path):
    """The prompt ends at the marker, not where the two texts first differ."""
    prompt, chosen, rejected = split_transcripts(
        "\n\nHuman: q\n\nAssistant: I think yes", "\n\nHuman: q\n\nAssistant: I think no", "x"
    )
    assert prompt.endswith("Assistant:") and chosen == " I think yes" and rejected == " I think no"


@pytest.mark.skipif(not HH.exists(), reason="shared HH-RLHF data not present")
def test_the_shared_hh_rlhf_file_reads(tmp_path):
    with gzip.open(HH, "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(50)]
    path = tmp_path / "hh.jsonl"
    path.write_text("".join(lines))
    try:
        pairs = read_pairs(path)
    except DataError as e:  # a real file may hold identical pairs: the error must still name the line
        assert f"{path}:" in str(e)
        return
    assert len(pairs) == 50
    for pair in pairs:
        assert pair.prompt.endswith("Assistant:") and "Human:" in pair.prompt
        assert pair.chosen != pair.rejected


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"prompt": "q", "rejected": "no"}, "missing field 'chosen'"),
        ({"prompt": "q", "chosen": "yes"}, "missing field 'rejected'"),
        ({"prompt": "q", "chosen": "  ", "rejected": "no"}, "field 'chosen' is empty"),
        ({"prompt": "q", "chosen": "yes", "rejected": ""}, "field 'rejected' is empty"),
        ({"prompt": "q", "chosen": "same", "rejected": " same "}, "identical"),
        ({"prompt": "q", "chosen": 3, "rejected": "no"}, "must be text"),
        ({"chosen": "one reply", "rejected": "another"}, "no 'prompt' field"),
        (["q", "yes", "no"], "expected an object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_records_name_the_file_and_line(tmp_path, record, message):
    good = {"prompt": "q", "chosen": "yes", "rejected": "no"}
    path = _write(tmp_path, [good, good, record])
    with pytest.raises(DataError) as err:
        read_pairs(path)
    assert f"{path}:3:" in str(err.value)
    assert message in str(err.value)


def test_an_empty_or_missing_file_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no preference pairs"):
        read_pairs(_write(tmp_path, [""]))
    with pytest.raises(DataError, match="no such preference file"):
        read_pairs(tmp_path / "absent.jsonl")
