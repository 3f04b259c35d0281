"""The user's own data: JSONL, CSV, TSV, Parquet or "label text" lines, one file or a train/test pair.

CSV and TSV files have a header row unless `header: false`, whose columns are then named by `columns`
(or by their position, 0, 1, …). The input can join several fields with a template,
`input: "{title}. {description}"`. A .txt file holds one example a line: the label, a space, the text
(fastText's `__label__` prefix is dropped); its fields are `label` and `text`. `hf:NAME[:CONFIG]` reads a
Hugging Face dataset: a folder written by `save_to_disk` (offline), else the hub through
`datasets.load_dataset` when the machine is online; its `test` split, when it has one, is the test split,
and class-label columns give their label names.

Every problem is reported with the file and line (or row) at fault. A task whose targets come from a
small label set is a classification task (accuracy, macro-F1); otherwise it is a generation task
(exact match after whitespace normalization).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tunebench.core.errors import DataError, did_you_mean
from tunebench.core.typed import require
from tunebench.core.ui import console
from tunebench.tasks.base import TASKS, Example, Kind, Splits, Task, TaskEntry

FORMATS = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".txt": "txt",
}
#: The fields of a format whose rows carry their own names (a "label text" line), used when the spec
#: leaves `input` and `target` at their defaults.
FORMAT_FIELDS = {"txt": ("text", "label")}
FASTTEXT_LABEL = "__label__"
#: A data source that is a Hugging Face dataset rather than a file: `hf:NAME[:CONFIG]`.
HF_PREFIX = "hf:"


@dataclass
class FileOptions:
    path: str = ""
    """The data file; with `test_path` it is the training file."""
    test_path: str | None = None
    """An optional separate test file (the dev split is then carved from `path`)."""
    input: str = "input"
    """Field holding the model's input, or a template joining several: "{title}. {description}"."""
    target: str = "target"
    """Field holding the expected answer or label."""
    kind: str = "auto"
    """classification, generation, or auto (classification when targets come from a small label set)."""
    instruction: str = ""
    """What a prompted model is told to do (a sensible default is derived from the kind)."""
    dev_fraction: float = 0.1
    test_fraction: float = 0.2
    train_size: int | None = None
    """Cap on training examples (a seeded sample), for quick comparisons on large files."""
    test_size: int | None = None
    dev_size: int | None = None
    seed: int = 0
    encoding: str = "utf-8"
    """Text encoding of the file(s) (JSONL, CSV, TSV), e.g. latin-1 or cp1252; a UTF-8 byte order mark is
    skipped."""
    duplicates: str = "warn"
    """Dev or test examples whose input is also in an earlier split (leakage): warn (counted in the result
    and the report), drop (removed from dev and test), or error."""
    header: bool = True
    """CSV/TSV: the first row names the columns. false: every row is data, and `columns` names them (else
    they are named by position: 0, 1, …)."""
    columns: list[str] | None = None
    """CSV/TSV without a header: the columns' names, in order, e.g. [label, title, text]."""
    split: str = "train"
    """hf: datasets: the split the examples come from."""
    test_split: str | None = "test"
    """hf: datasets: the split used as the test split when the dataset has it (else test is carved from
    `split`, as from a file)."""

    def check(self, where: str) -> None:
        require(bool(self.path), f"{where}.path", "a data file is required")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            require(
                False, f"{where}.encoding", f"unknown encoding {self.encoding!r}; e.g. utf-8, latin-1, cp1252"
            )
        require(
            self.duplicates in ("warn", "drop", "error"),
            f"{where}.duplicates",
            f"expected warn, drop or error, got {self.duplicates!r}",
        )
        require(
            self.kind in ("auto", "classification", "generation"),
            f"{where}.kind",
            f"expected auto, classification or generation, got {self.kind!r}",
        )
        require(0 < self.dev_fraction < 1, f"{where}.dev_fraction", "must be between 0 and 1")
        require(0 < self.test_fraction < 1, f"{where}.test_fraction", "must be between 0 and 1")
        require(self.dev_fraction + self.test_fraction < 1, where, "dev_fraction + test_fraction must be < 1")
        for name in ("train_size", "test_size", "dev_size"):
            value = getattr(self, name)
            require(value is None or value >= 1, f"{where}.{name}", "must be at least 1")
        require(
            self.columns is None or not self.header,
            f"{where}.columns",
            "names the columns of a file without a header row; add header: false (a header row names its own)",
        )
        if self.columns is not None:
            twice = sorted({c for c in self.columns if self.columns.count(c) > 1})
            require(not twice, f"{where}.columns", f"{', '.join(twice)} named twice")


def read_rows(
    path: Path,
    encoding: str = "utf-8",
    *,
    header: bool = True,
    columns: list[str] | None = None,
    split: str = "train",
) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs. Line numbers are 1-based lines of the file (rows for Parquet and datasets).
    `header` and `columns` apply to CSV and TSV, `split` to a Hugging Face dataset (FileOptions)."""
    if str(path).startswith(HF_PREFIX):
        return _read_hf(str(path), split)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    fmt = file_format(path)
    if fmt == "parquet":
        return _read_parquet(path)
    text = _decode(path, encoding)
    if fmt == "jsonl":
        return _parse_jsonl(path, text)
    if fmt == "txt":
        return _parse_labelled_lines(path, text)
    return _parse_delimited(path, text, "," if fmt == "csv" else "\t", header=header, columns=columns)


def _read_hf(source: str, split: str) -> list[tuple[int, dict[str, Any]]]:
    """The rows of one split of a Hugging Face dataset, class labels as their names."""
    dataset = _load_hf(source)
    if hasattr(dataset, "keys"):  # a DatasetDict
        if split not in dataset:
            raise DataError(f"{source}: no split {split!r}; the dataset has {', '.join(dataset.keys())}")
        dataset = dataset[split]
    names = {col: f.int2str for col, f in dataset.features.items() if hasattr(f, "int2str")}
    rows = []
    for i, row in enumerate(dataset, start=1):
        rows.append((i, {k: names[k](v) if k in names and isinstance(v, int) else v for k, v in row.items()}))
    return rows


def hf_splits(source: str) -> list[str]:
    dataset = _load_hf(source)
    return list(dataset.keys()) if hasattr(dataset, "keys") else ["train"]


def _load_hf(source: str) -> Any:
    try:
        import datasets  # lazy: slow import
    except ImportError:
        raise DataError(f"{source}: reading Hugging Face datasets needs the datasets package") from None
    name, _, config = source[len(HF_PREFIX) :].partition(":")
    if Path(name).is_dir():  # written by save_to_disk: no network needed
        try:
            return datasets.load_from_disk(name)
        except (FileNotFoundError, ValueError) as e:
            raise DataError(f"{source}: not a dataset saved with save_to_disk ({e})") from None
    try:
        return datasets.load_dataset(name, config or None)
    except Exception as e:  # offline, an unknown name, a config missing: datasets raises several types
        raise DataError(
            f"{source}: could not load it from the Hugging Face hub ({type(e).__name__}: {e}); offline, "
            "save it once with dataset.save_to_disk(FOLDER) and use hf:FOLDER"
        ) from None


def file_format(path: Path) -> str:
    """The format a data file's suffix names; an unsupported one is an error that lists the supported."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: {file_format_error(path)}")
    return fmt


def file_format_error(path: Path) -> str:
    return (
        f"tunebench does not read {path.suffix or 'suffix-less'!r} files; supported: {', '.join(FORMATS)} "
        "(JSON lines, CSV, TSV, Parquet, and .txt with a label and the text a line)"
    )


def _parse_labelled_lines(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    """'label text' lines (fastText's `__label__x text` too): fields `label` and `text`."""
    rows = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        label, _, rest = line.strip().partition(" ")
        label = label.removeprefix(FASTTEXT_LABEL)
        if not rest.strip() or not label:
            raise DataError(
                f"{path}:{lineno}: expected a label, a space and the text, got {line.strip()[:60]!r}"
            )
        rows.append((lineno, {"label": label, "text": rest.strip()}))
    return rows


def _decode(path: Path, encoding: str) -> str:
    raw = path.read_bytes()
    utf8 = codecs.lookup(encoding).name == "utf-8"
    try:
        return raw.decode("utf-8-sig" if utf8 else encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        byte = raw[e.start : e.start + 1].hex()
        hint = (
            "re-save it as UTF-8, or give its encoding, e.g. --task-opt encoding=latin-1 (or cp1252)"
            if utf8
            else "check the encoding option"
        )
        raise DataError(
            f"{path}:{line}: not {'UTF-8' if utf8 else encoding} text (byte 0x{byte} at offset {e.start}: "
            f"{e.reason}); {hint}"
        ) from None


def _parse_jsonl(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    # Split on newlines only: str.splitlines also splits at U+2028 and other characters that JSON strings
    # may hold unescaped, which would cut a valid row in two.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        rows.append((lineno, row))
    return rows


def _parse_delimited(
    path: Path, text: str, delimiter: str, *, header: bool = True, columns: list[str] | None = None
) -> list[tuple[int, dict[str, Any]]]:
    # A file-like object with newline="" keeps the newlines inside quoted fields (splitting the text
    # into lines first would silently drop them, and split rows at characters such as U+2028).
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:  # an unclosed quote, a field over the size limit
            raise DataError(f"{path}:{reader.line_num}: not valid {_format_name(delimiter)} ({e})") from None
        if rows and not any(cell.strip() for cell in row):
            continue
        rows.append((reader.line_num, row))
    if not rows:
        return []
    if header:
        names, named_by = rows.pop(0)[1], "the header has"
    else:
        names = columns or [str(i) for i in range(len(rows[0][1]))]
        named_by = "columns names" if columns else "the first row has"
    for lineno, row in rows:
        if len(row) != len(names):
            raise DataError(
                f"{path}:{lineno}: {len(row)} fields, but {named_by} {len(names)} ({', '.join(names)})"
            )
    return [(lineno, dict(zip(names, row, strict=True))) for lineno, row in rows]


def _format_name(delimiter: str) -> str:
    return "CSV" if delimiter == "," else "TSV"


def _read_parquet(path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq  # lazy: optional extra [parquet]
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow (pip install 'tunebench[parquet]')") from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    return [(i + 1, row) for i, row in enumerate(table.to_pylist())]


def load_examples(path: Path, options: FileOptions, split: str | None = None) -> list[Example]:
    """The file's examples: `options.input` (a field, or a template of fields) and `options.target`."""
    split = split or options.split
    rows = read_rows(path, options.encoding, header=options.header, columns=options.columns, split=split)
    if not rows:
        raise DataError(f"{path}: the file holds no examples")
    input_field, target_field = _fields(path, options)
    examples = []
    for lineno, row in rows:
        inp = (
            _fill(input_field, row, path, lineno)
            if "{" in input_field
            else _field(row, input_field, path, lineno)
        )
        tgt = _field(row, target_field, path, lineno)
        if inp is None or tgt is None or str(tgt).strip() == "":
            raise DataError(f"{path}:{lineno}: empty {input_field if inp is None else target_field!r}")
        examples.append(Example(str(inp), str(tgt).strip()))
    return examples


def _fields(path: Path, options: FileOptions) -> tuple[str, str]:
    """(input, target) as the options name them; a format whose rows name their own fields (.txt: label and
    text) supplies them where the options are left at their defaults."""
    own = None if str(path).startswith(HF_PREFIX) else FORMAT_FIELDS.get(file_format(path))
    if own is None:
        return options.input, options.target
    defaults = FileOptions()
    return (
        own[0] if options.input == defaults.input else options.input,
        own[1] if options.target == defaults.target else options.target,
    )


def _field(row: dict[str, Any], name: str, path: Path, lineno: int) -> Any:
    if name not in row:
        present = ", ".join(row)
        raise DataError(
            f"{path}:{lineno}: no field {name!r}.{did_you_mean(name, row)} Fields present: {present}"
        )
    value = row[name]
    if isinstance(value, dict | list):
        kind = "object" if isinstance(value, dict) else "array"
        raise DataError(f"{path}:{lineno}: field {name!r} holds a JSON {kind}; expected text or a number")
    return value


def _fill(template: str, row: dict[str, Any], path: Path, lineno: int) -> str:
    """An input built from several fields: "{title}. {description}"."""
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    values = {name: _field(row, name, path, lineno) for name in names}
    return template.format(**{k: "" if v is None else v for k, v in values.items()})


class FileTask(Task):
    def __init__(self, options: FileOptions) -> None:
        self.options = options
        self.path = Path(options.path)
        self.name = self.path.stem
        self._splits = self._load()
        targets = [e.target for e in self._splits.train + self._splits.dev + self._splits.test]
        self.kind = self._infer_kind(targets)
        self._labels = sorted(set(targets)) if self.kind == "classification" else None
        if self._labels is not None and len(self._labels) < 2:
            raise DataError(
                f"{self.path}: every target is {self._labels[0]!r}; classification needs two labels"
            )
        longest = max(len(t) for t in targets)
        self.max_new_tokens = min(256, max(8, longest // 2 + 8))
        self.instruction = options.instruction or self._default_instruction()

    def _load(self) -> Splits:
        o = self.options
        rng = random.Random(f"file:{o.seed}")
        main = load_examples(self.path, o)
        test_source = self._test_source()
        if test_source is not None:
            test = load_examples(*test_source)
            pool = main[:]
            rng.shuffle(pool)
            n_dev = max(1, round(len(pool) * o.dev_fraction))
            dev, train = pool[:n_dev], pool[n_dev:]
        else:
            pool = main[:]
            rng.shuffle(pool)
            n_test = max(1, round(len(pool) * o.test_fraction))
            n_dev = max(1, round(len(pool) * o.dev_fraction))
            test, dev, train = pool[:n_test], pool[n_test : n_test + n_dev], pool[n_test + n_dev :]
        train, dev, test = (
            _cap(s, n, rng) for s, n in ((train, o.train_size), (dev, o.dev_size), (test, o.test_size))
        )
        splits = self._check_overlap(Splits(train=train, dev=dev, test=test))
        for name in ("train", "dev", "test"):
            if not getattr(splits, name):
                dropped = " after dropping duplicate inputs" if self.options.duplicates == "drop" else ""
                raise DataError(
                    f"{self.path}: the {name} split is empty{dropped} ({len(main)} examples in the file); "
                    "add data or change dev_fraction/test_fraction"
                )
        return splits

    def _test_source(self) -> tuple[Path, FileOptions, str] | None:
        """Where the test split comes from when not carved from the data: `test_path`, or the dataset's
        `test_split`."""
        o = self.options
        if o.test_path:
            return Path(o.test_path), o, o.split
        if (
            str(self.path).startswith(HF_PREFIX)
            and o.test_split
            and o.test_split in hf_splits(str(self.path))
        ):
            return self.path, o, o.test_split
        return None

    def _check_overlap(self, splits: Splits) -> Splits:
        """Dev and test examples whose input an earlier split holds too: their scores measure recall, not
        skill. Counted (recorded in the result, shown by the report), dropped, or refused, as asked."""
        self.overlap = splits.overlap()
        if not any(self.overlap.values()):
            return splits
        said = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in self.overlap.items() if n)
        files = self.path.name + (f" + {Path(self.options.test_path).name}" if self.options.test_path else "")
        if self.options.duplicates == "error":
            raise DataError(
                f"{self.path}: duplicate inputs across splits ({said}); remove them, or set "
                "--task-opt duplicates=drop (or warn)"
            )
        if self.options.duplicates == "drop":
            train_inputs = {e.input.strip() for e in splits.train}
            dev = [e for e in splits.dev if e.input.strip() not in train_inputs]
            seen = train_inputs | {e.input.strip() for e in dev}
            test = [e for e in splits.test if e.input.strip() not in seen]
            console.print(f"[yellow]{files}: dropped duplicate inputs across splits ({said})[/yellow]")
            return Splits(train=splits.train, dev=dev, test=test)
        console.print(
            f"[yellow]warning: {files}: duplicate inputs across splits ({said}); scores on them measure "
            "recall. --task-opt duplicates=drop removes them[/yellow]"
        )
        return splits

    def _infer_kind(self, targets: list[str]) -> Kind:
        if self.options.kind != "auto":
            return cast(Kind, self.options.kind)  # FileOptions.check allows only auto or a Kind
        distinct = len(set(targets))
        return "classification" if distinct <= 100 and distinct * 5 <= len(targets) else "generation"

    def _default_instruction(self) -> str:
        if self.kind == "classification":
            return "Classify the text. Reply with exactly one of these labels: " + ", ".join(
                self._labels or []
            )
        return "Answer with the expected output only."

    def splits(self) -> Splits:
        return self._splits

    @property
    def labels(self) -> list[str] | None:
        return self._labels

    def describe(self) -> dict:
        return {
            **super().describe(),
            "path": str(self.path),
            "test_path": self.options.test_path,
            "fields": dict(zip(("input", "target"), _fields(self.path, self.options), strict=True)),
            "overlap": self.overlap,
            "duplicates": self.options.duplicates,
        }


def _cap(examples: list[Example], n: int | None, rng: random.Random) -> list[Example]:
    if n is None or n >= len(examples):
        return examples
    return rng.sample(examples, n)


TASKS.add(
    "file",
    TaskEntry(
        options=FileOptions,
        factory=FileTask,
        summary="your data: JSONL/CSV/TSV/Parquet/.txt with input and target fields; exact match or accuracy + macro-F1",
        examples=[
            "--task data.jsonl --task-opt input=text --task-opt target=label",
            "--task news.csv --task-opt header=false --task-opt columns=label,title,text "
            "--task-opt 'input={title}. {text}' --task-opt target=label",
        ],
    ),
)
