"""The user's own data (tasks/files.py): formats, field mapping, errors that name file and line, splits."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tunebench.core.errors import DataError, SpecError
from tunebench.tasks import Example, build_task
from tunebench.tasks.files import FileTask

LABELS = ["neg", "neu", "pos"]


def rows(n: int = 50, labels: list[str] = LABELS) -> list[dict[str, str]]:
    return [{"text": f"review number {i}", "label": labels[i % len(labels)]} for i in range(n)]


def write_jsonl(path: Path, data: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    return path


def write_delimited(path: Path, data: list[dict], delimiter: str) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(data[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(data)
    return path


def write_parquet(path: Path, data: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(data), path)
    return path


def load(path: Path, **options) -> FileTask:
    task = build_task("file", {"path": str(path), "input": "text", "target": "label", **options})
    assert isinstance(task, FileTask)
    return task


def data_error(path: Path, **options) -> str:
    with pytest.raises(DataError) as info:
        load(path, **options)
    return str(info.value)


# --- formats ----------------------------------------------------------------------------------------


WRITERS = {
    "jsonl": write_jsonl,
    "csv": lambda p, d: write_delimited(p, d, ","),
    "tsv": lambda p, d: write_delimited(p, d, "\t"),
    "parquet": write_parquet,
}


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_each_format_loads_with_a_field_mapping(tmp_path, fmt):
    data = rows(50)
    path = WRITERS[fmt](tmp_path / f"reviews.{fmt}", data)
    task = load(path)
    splits = task.splits()
    # 50 rows: test_fraction 0.2 -> 10, dev_fraction 0.1 -> 5, the rest trains
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (35, 5, 10)
    everything = splits.train + splits.dev + splits.test
    assert sorted(everything, key=lambda e: e.input) == sorted(
        (Example(r["text"], r["label"]) for r in data), key=lambda e: e.input
    )
    assert task.name == "reviews"
    assert task.describe()["fields"] == {"input": "text", "target": "label"}


def test_all_formats_give_the_same_splits(tmp_path):
    data = rows(30)
    fingerprints = {
        fmt: load(writer(tmp_path / f"d.{fmt}", data)).splits().fingerprint()
        for fmt, writer in WRITERS.items()
    }
    assert len(set(fingerprints.values())) == 1, fingerprints


def test_splits_are_deterministic_and_depend_on_the_seed(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", rows(40))
    assert load(path).splits() == load(path).splits()
    assert load(path, seed=1).splits().test != load(path).splits().test


def test_jsonl_non_string_values_and_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [json.dumps({"q": i, "a": i * 2, "extra": None}) for i in range(10)]
    path.write_text("\n".join(lines[:5]) + "\n\n   \n" + "\n".join(lines[5:]) + "\n")
    task = build_task("file", {"path": str(path), "input": "q", "target": "a"})
    examples = task.splits().train + task.splits().dev + task.splits().test
    assert sorted((e.input, e.target) for e in examples) == sorted((str(i), str(i * 2)) for i in range(10))


def test_targets_are_stripped(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": f"t{i}", "label": f"  a{i}\n"} for i in range(10)])
    task = load(path)
    assert {e.target for e in task.splits().test} <= {f"a{i}" for i in range(10)}


def test_csv_quoted_field_with_a_comma_and_a_newline(tmp_path):
    data = [{"text": f"line one, {i}\nline two", "label": f"out {i}"} for i in range(10)]
    path = write_delimited(tmp_path / "d.csv", data, ",")
    task = load(path)
    inputs = {e.input for e in task.splits().train + task.splits().dev + task.splits().test}
    assert inputs == {r["text"] for r in data}


def test_csv_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "d.csv"
    text = "text,label\n" + "".join(f"t{i},l{i}\n" for i in range(10))
    path.write_bytes(text.encode("utf-8-sig"))
    task = load(path)  # the BOM must not become part of the first field name
    assert len(task.splits().train) == 7


# --- errors that name the file and line ----------------------------------------------------------


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = [json.dumps(r) for r in rows(5)]
    path.write_text(f"{good[0]}\n{good[1]}\n\n{{'text': 'single quotes'}}\n{good[2]}\n")
    message = data_error(path)
    assert message.startswith(f"{path}:4: not valid JSON")


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(rows(1)[0]) + "\n[1, 2]\n")
    assert data_error(path) == f"{path}:2: expected a JSON object, got list"


def test_csv_row_with_the_wrong_number_of_fields_names_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\na,pos\nb,neg\nc,pos,extra\nd,neg\n")
    assert data_error(path) == f"{path}:4: 3 fields, but the header has 2 (text, label)"


def test_tsv_row_with_too_few_fields_names_the_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("text\tlabel\na\tpos\n\nb\n")
    assert data_error(path) == f"{path}:4: 1 fields, but the header has 2 (text, label)"


def test_line_numbers_count_the_lines_of_a_multi_line_field(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('text,label\n"two\nlines",pos\nc\n')
    assert data_error(path) == f"{path}:4: 1 fields, but the header has 2 (text, label)"


def test_missing_field_lists_the_fields_and_suggests_a_close_match(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", rows(10))
    message = data_error(path, target="lable")
    assert message == f"{path}:1: no field 'lable'. Did you mean 'label'? Fields present: text, label"


def test_missing_field_in_a_later_row_names_that_row(tmp_path):
    data = rows(10)
    del data[6]["text"]
    path = write_jsonl(tmp_path / "d.jsonl", data)
    message = data_error(path)
    assert message.startswith(f"{path}:7: no field 'text'.")
    assert "Fields present: label" in message


def test_empty_target_names_the_line_and_field(tmp_path):
    data = rows(10)
    data[2]["label"] = "   "
    path = write_jsonl(tmp_path / "d.jsonl", data)
    assert data_error(path) == f"{path}:3: empty 'label'"


def test_null_input_names_the_input_field(tmp_path):
    data: list[dict] = rows(10)
    data[0]["text"] = None
    path = write_jsonl(tmp_path / "d.jsonl", data)
    assert data_error(path) == f"{path}:1: empty 'text'"


@pytest.mark.parametrize(
    ("name", "content"), [("empty.jsonl", ""), ("empty.csv", ""), ("header.csv", "text,label\n")]
)
def test_empty_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    assert data_error(path) == f"{path}: the file holds no examples"


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncafé,pos\n".encode("latin-1"))
    message = data_error(path)
    assert message.startswith(f"{path}:2: not UTF-8 text (byte 0xe9 at offset 14:")
    assert "re-save it as UTF-8, or give its encoding, e.g. --task-opt encoding=latin-1" in message


def test_missing_file_and_unknown_format(tmp_path):
    assert data_error(tmp_path / "nope.jsonl") == f"{tmp_path / 'nope.jsonl'}: no such file"
    path = tmp_path / "d.xlsx"
    path.write_text("x")
    message = data_error(path)
    assert message.startswith(f"{path}: tunebench does not read '.xlsx' files; supported:")
    assert ".jsonl" in message and ".parquet" in message and ".txt" in message


def test_damaged_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"not parquet at all")
    assert data_error(path).startswith(f"{path}: not a readable Parquet file")


def test_missing_path_is_a_spec_error():
    with pytest.raises(SpecError, match=r"task\.path: a data file is required"):
        build_task("file", {})


@pytest.mark.parametrize("n", [1, 2])
def test_too_few_rows_names_the_empty_split(tmp_path, n):
    # one row for test and one for dev come first, so the train split is the one left empty
    path = write_jsonl(tmp_path / "tiny.jsonl", rows(n))
    message = data_error(path)
    assert message.startswith(f"{path}: the train split is empty ({n} examples in the file)")
    assert "dev_fraction/test_fraction" in message


def test_too_few_rows_beside_a_test_file_names_the_empty_split(tmp_path):
    train_path = write_jsonl(tmp_path / "train.jsonl", rows(1))
    test_path = write_jsonl(tmp_path / "test.jsonl", rows(5))
    message = data_error(train_path, test_path=str(test_path))
    assert message.startswith(f"{train_path}: the train split is empty (1 examples in the file)")


# --- kind and labels -----------------------------------------------------------------------------


def test_few_distinct_targets_make_a_classification_task(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", rows(60, ["pos", "neg", "neu"]))
    task = load(path)
    assert task.kind == "classification"
    assert task.labels == ["neg", "neu", "pos"]
    assert task.describe()["labels"] == ["neg", "neu", "pos"]
    assert "neg, neu, pos" in task.instruction
    scores = task.score(["pos", "maybe"], ["pos", "neg"])
    assert scores.primary == "accuracy"
    assert scores.correct == [True, False]


def test_unique_targets_make_a_generation_task(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": f"q{i}", "label": f"answer {i}"} for i in range(60)])
    task = load(path)
    assert task.kind == "generation"
    assert task.labels is None
    assert task.instruction == "Answer with the expected output only."
    assert task.score(["answer 1"], ["answer 1"]).primary == "exact_match"


def test_kind_can_be_forced(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", rows(60))
    assert load(path, kind="generation").kind == "generation"
    assert load(path, instruction="Say pos or neg.").instruction == "Say pos or neg."


def test_a_single_label_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", rows(20, ["yes"]))
    message = data_error(path)
    assert message == f"{path}: every target is 'yes'; classification needs two labels"


# --- train/test files and caps -------------------------------------------------------------------


def test_a_separate_test_file_is_the_test_split(tmp_path):
    train_path = write_jsonl(tmp_path / "train.jsonl", rows(40))
    test_rows = [{"text": f"held out {i}", "label": LABELS[i % 3]} for i in range(7)]
    test_path = write_jsonl(tmp_path / "test.jsonl", test_rows)
    task = load(train_path, test_path=str(test_path))
    splits = task.splits()
    assert splits.test == [Example(r["text"], r["label"]) for r in test_rows]
    assert (len(splits.train), len(splits.dev)) == (36, 4)  # dev_fraction 0.1 of the training file
    train_inputs = {e.input for e in splits.train + splits.dev}
    assert train_inputs == {r["text"] for r in rows(40)}
    assert task.describe()["test_path"] == str(test_path)


def test_errors_in_the_test_file_name_the_test_file(tmp_path):
    train_path = write_jsonl(tmp_path / "train.jsonl", rows(40))
    test_path = tmp_path / "test.csv"
    test_path.write_text("text,label\nx,pos\ny\n")
    assert data_error(train_path, test_path=str(test_path)) == (
        f"{test_path}:3: 1 fields, but the header has 2 (text, label)"
    )


def test_train_size_caps_the_train_split_deterministically(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", rows(100))
    full = load(path).splits()
    capped = load(path, train_size=12).splits()
    again = load(path, train_size=12).splits()
    assert len(full.train) == 70
    assert len(capped.train) == 12
    assert capped.train == again.train
    assert set(capped.train) <= set(full.train)
    assert capped.test == full.test
    assert capped.dev == full.dev


def test_train_size_larger_than_the_split_keeps_it_whole(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", rows(20))
    assert load(path, train_size=1000).splits() == load(path).splits()


def test_bad_options_are_spec_errors(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", rows(20))
    with pytest.raises(SpecError, match=r"task\.kind"):
        load(path, kind="regression")
    with pytest.raises(SpecError, match="dev_fraction \\+ test_fraction must be < 1"):
        load(path, dev_fraction=0.5, test_fraction=0.5)
    with pytest.raises(SpecError, match=r"task\.train_size: must be at least 1"):
        load(path, train_size=0)


# --- data in other shapes: no header, joined fields, "label text" lines, unsupported formats ---------------

NEWS = [
    ("3", "Fears for T N pension", "Unions representing workers at Turner Newall say"),
    ("1", "Peace talks", "Leaders met"),
]


def write_news(path: Path, n: int = 40) -> Path:
    """A header-less CSV as public news-topic corpora ship it: "class","title","description"."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_ALL)
        for i in range(n):
            label, title, text = NEWS[i % 2]
            writer.writerow([label, f"{title} {i}", text])
    return path


def test_a_csv_without_a_header_takes_named_columns_and_an_input_template(tmp_path):
    path = write_news(tmp_path / "news.csv")
    task = build_task(
        "file",
        {"path": str(path), "header": False, "columns": ["label", "title", "text"],
         "input": "{title}. {text}", "target": "label"},
    )  # fmt: skip
    examples = task.splits().train + task.splits().dev + task.splits().test
    assert len(examples) == 40  # the first row is data, not a header
    assert (
        Example("Fears for T N pension 0. Unions representing workers at Turner Newall say", "3") in examples
    )
    assert task.kind == "classification" and task.labels == ["1", "3"]


def test_a_csv_without_a_header_can_be_addressed_by_column_position(tmp_path):
    path = write_news(tmp_path / "news.csv")
    task = build_task("file", {"path": str(path), "header": False, "input": "2", "target": "0"})
    assert {e.target for e in task.splits().train} == {"1", "3"}


def test_header_less_errors_name_the_setting(tmp_path):
    path = write_news(tmp_path / "news.csv")
    with pytest.raises(DataError, match=r"news.csv:1: 3 fields, but columns names 2 \(label, text\)"):
        build_task(
            "file",
            {
                "path": str(path),
                "header": False,
                "columns": ["label", "text"],
                "input": "text",
                "target": "label",
            },
        )
    with pytest.raises(
        SpecError, match="columns: names the columns of a file without a header row; add header: false"
    ):
        build_task("file", {"path": str(path), "columns": ["label", "title", "text"]})
    with pytest.raises(DataError, match=r"news.csv:1: no field 'titel'. Did you mean 'title'\?"):
        build_task(
            "file",
            {
                "path": str(path),
                "header": False,
                "columns": ["label", "title", "text"],
                "input": "{titel}: {text}",
                "target": "label",
            },
        )


def test_label_text_lines(tmp_path):
    path = tmp_path / "intents.txt"
    lines = [
        f"{'__label__' if i % 3 == 0 else ''}{'greet' if i % 2 else 'bye'} message number {i}"
        for i in range(30)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = build_task("file", {"path": str(path)})
    examples = task.splits().train + task.splits().dev + task.splits().test
    assert Example("message number 3", "greet") in examples  # fastText's __label__ prefix dropped
    assert task.labels == ["bye", "greet"] and task.describe()["fields"] == {
        "input": "text",
        "target": "label",
    }
    path.write_text("greet hello\nlonely\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"intents.txt:2: expected a label, a space and the text, got 'lonely'"
    ):
        build_task("file", {"path": str(path)})


def test_a_data_file_in_an_unsupported_format_is_named_as_such(tmp_path):
    from tunebench.config import parse_spec

    path = tmp_path / "x.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(SpecError) as info:
        parse_spec({"models": ["tiny-llama"], "methods": ["zero-shot"], "task": str(path)}, source="flags")
    message = str(info.value)
    assert f"{path} is a file, but tunebench does not read '.xlsx' files; supported: .jsonl" in message
    assert "unknown task" not in message
    txt = write_news(tmp_path / "n.txt")  # a .txt file is taken as a data file, read at the run's start
    spec = parse_spec({"models": ["tiny-llama"], "methods": ["zero-shot"], "task": str(txt)})
    assert spec.task.name == "file" and spec.task.options["path"] == str(txt)


def test_a_hugging_face_dataset_saved_to_disk(tmp_path):
    """`hf:FOLDER` reads a dataset written by save_to_disk (no network): its train split for train and dev,
    its test split as the test split, class labels as their names; `hf:NAME` would go to the hub."""
    import datasets

    from tunebench.config import parse_spec

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["world", "sports"])}
    )

    def split(n: int, offset: int) -> datasets.Dataset:
        rows = {"text": [f"headline {offset + i}" for i in range(n)], "label": [i % 2 for i in range(n)]}
        return datasets.Dataset.from_dict(rows, features=features)

    folder = tmp_path / "news"
    datasets.DatasetDict({"train": split(40, 0), "test": split(10, 1000)}).save_to_disk(str(folder))
    spec = parse_spec({"models": ["tiny-llama"], "methods": ["zero-shot"], "task": f"hf:{folder}"})
    assert spec.task.name == "file" and spec.task.options["path"] == f"hf:{folder}"
    task = build_task("file", {"path": f"hf:{folder}", "input": "text", "target": "label"})
    s = task.splits()
    assert len(s.test) == 10 and all(int(e.input.split()[1]) >= 1000 for e in s.test)  # the test split
    assert len(s.train) + len(s.dev) == 40 and task.labels == ["sports", "world"]
    with pytest.raises(DataError, match=r"no split 'validation'; the dataset has train, test"):
        build_task(
            "file", {"path": f"hf:{folder}", "input": "text", "target": "label", "split": "validation"}
        )
