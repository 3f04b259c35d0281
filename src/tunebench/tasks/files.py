"""The user's own data: JSONL, CSV, TSV or Parquet, one file or a train/test pair.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tunebench.core.errors import DataError, did_you_mean
from tunebench.core.typed import require
from tunebench.core.ui import console
from tunebench.tasks.base import TASKS, Example, Kind, Splits, Task, TaskEntry

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}


@dataclass
class FileOptions:
    path: str = ""
    """The data file; with `test_path` it is the training file."""
    test_path: str | None = None
    """An optional separate test file (the dev split is then carved from `path`)."""
    input: str = "input"
    """Field holding the model's input."""
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


def read_rows(path: Path, encoding: str = "utf-8") -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs. Line numbers are 1-based lines of the file (rows for Parquet)."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown format {path.suffix!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        return _read_parquet(path)
    text = _decode(path, encoding)
    if fmt == "jsonl":
        return _parse_jsonl(path, text)
    return _parse_delimited(path, text, "," if fmt == "csv" else "\t")


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


def _parse_delimited(path: Path, text: str, delimiter: str) -> list[tuple[int, dict[str, Any]]]:
    # A file-like object with newline="" keeps the newlines inside quoted fields (splitting the text
    # into lines first would silently drop them, and split rows at characters such as U+2028).
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: not valid {_format_name(delimiter)} ({e})") from None
    rows = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:  # an unclosed quote, a field over the size limit
            raise DataError(f"{path}:{reader.line_num}: not valid {_format_name(delimiter)} ({e})") from None
        lineno = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(
                f"{path}:{lineno}: {len(row)} fields, but the header has {len(header)} ({', '.join(header)})"
            )
        rows.append((lineno, dict(zip(header, row))))
    return rows


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


def load_examples(path: Path, input_field: str, target_field: str, encoding: str = "utf-8") -> list[Example]:
    rows = read_rows(path, encoding)
    if not rows:
        raise DataError(f"{path}: the file holds no examples")
    examples = []
    for lineno, row in rows:
        for name in (input_field, target_field):
            if name not in row:
                present = ", ".join(row)
                raise DataError(
                    f"{path}:{lineno}: no field {name!r}.{did_you_mean(name, row)} Fields present: {present}"
                )
        inp, tgt = row[input_field], row[target_field]
        for name, value in ((input_field, inp), (target_field, tgt)):
            if isinstance(value, dict | list):
                raise DataError(
                    f"{path}:{lineno}: field {name!r} holds a JSON {'object' if isinstance(value, dict) else 'array'}; "
                    "expected text or a number"
                )
        if inp is None or tgt is None or str(tgt).strip() == "":
            raise DataError(f"{path}:{lineno}: empty {input_field if inp is None else target_field!r}")
        examples.append(Example(str(inp), str(tgt).strip()))
    return examples


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
        main = load_examples(self.path, o.input, o.target, o.encoding)
        if o.test_path:
            test = load_examples(Path(o.test_path), o.input, o.target, o.encoding)
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
            "fields": {"input": self.options.input, "target": self.options.target},
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
        summary="your data: JSONL/CSV/TSV/Parquet with input and target fields; exact match or accuracy + macro-F1",
        examples=["--task data.jsonl --task-opt input=text --task-opt target=label"],
    ),
)
