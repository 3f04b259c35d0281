"""The Goat-style arithmetic generator: deterministic, disjoint, exact sizes, correct answers."""

from __future__ import annotations

import re

import pytest

from tunebench.core.errors import SpecError
from tunebench.tasks import build_task
from tunebench.tasks.arithmetic import ArithmeticTask

_PROBLEM = re.compile(r"^(\d+) ([-+*/]) (\d+)$")


def make(**options) -> ArithmeticTask:
    opts = {"train_size": 60, "dev_size": 10, "test_size": 20, **options}
    task = build_task("arithmetic", opts)
    assert isinstance(task, ArithmeticTask)
    return task


def operands(text: str) -> tuple[int, str, int]:
    m = _PROBLEM.match(text)
    assert m, f"unexpected problem text {text!r}"
    return int(m.group(1)), m.group(2), int(m.group(3))


def test_same_options_give_same_data():
    a = make(op="mul", digits=2, seed=3).splits()
    b = make(op="mul", digits=2, seed=3).splits()
    assert a == b
    assert a.fingerprint() == b.fingerprint()


def test_different_seed_gives_different_data():
    a = make(seed=0).splits()
    b = make(seed=1).splits()
    assert [e.input for e in a.test] != [e.input for e in b.test]
    assert a.fingerprint() != b.fingerprint()


def test_sizes_are_exact():
    splits = make(train_size=37, dev_size=5, test_size=11).splits()
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (37, 5, 11)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_splits_are_disjoint_and_pairs_unique(op):
    splits = make(op=op, digits=2, train_size=300, dev_size=50, test_size=50).splits()
    inputs = {name: [e.input for e in getattr(splits, name)] for name in ("train", "dev", "test")}
    train, dev, test = (set(inputs[n]) for n in ("train", "dev", "test"))
    assert not train & dev
    assert not train & test
    assert not dev & test
    pairs = [operands(t)[::2] for split in inputs.values() for t in split]
    assert len(pairs) == 400
    assert len(set(pairs)) == len(pairs)


@pytest.mark.parametrize(("digits", "expected"), [(3, (3, 3)), ([3, 2], (3, 2)), (1, (1, 1))])
def test_operands_have_the_declared_digits(digits, expected):
    task = make(digits=digits, train_size=30, dev_size=5, test_size=5)
    splits = task.splits()
    for ex in splits.train + splits.dev + splits.test:
        a, _, b = operands(ex.input)
        assert (len(str(a)), len(str(b))) == expected, ex.input
    assert task.name == f"arithmetic-add-{expected[0]}x{expected[1]}"


def test_digits_as_a_comma_separated_string():
    task = make(digits="3,2")
    assert task.options.operand_digits() == [3, 2]
    a, _, b = operands(task.splits().test[0].input)
    assert (len(str(a)), len(str(b))) == (3, 2)


@pytest.mark.parametrize(
    ("op", "symbol", "solve"),
    [
        ("add", "+", lambda a, b: str(a + b)),
        ("sub", "-", lambda a, b: str(a - b)),
        ("mul", "*", lambda a, b: str(a * b)),
    ],
)
def test_answers_are_correct(op, symbol, solve):
    splits = make(op=op, digits=[3, 2]).splits()
    for ex in splits.train + splits.dev + splits.test:
        a, sym, b = operands(ex.input)
        assert sym == symbol
        assert ex.target == solve(a, b)


def test_sub_can_be_negative():
    splits = make(op="sub", digits=[1, 3]).splits()
    targets = [e.target for e in splits.train]
    assert all(t.startswith("-") for t in targets)  # a one-digit number minus a three-digit one
    a, _, b = operands(splits.train[0].input)
    assert targets[0] == str(a - b)


def test_division_gives_quotient_and_remainder():
    splits = make(op="div", digits=[3, 1], train_size=200, dev_size=20, test_size=20).splits()
    with_remainder = without = 0
    for ex in splits.train + splits.dev + splits.test:
        a, sym, b = operands(ex.input)
        assert sym == "/"
        assert b != 0
        q, r = divmod(a, b)
        if r:
            assert ex.target == f"{q} R {r}"
            with_remainder += 1
        else:
            assert ex.target == str(q)
            without += 1
    assert with_remainder > 0 and without > 0


def test_known_division_answers():
    from tunebench.tasks.arithmetic import solve

    assert solve("div", 17, 5) == "3 R 2"
    assert solve("div", 15, 5) == "3"
    assert solve("sub", 3, 10) == "-7"
    assert solve("mul", 12, 11) == "132"


def test_test_split_does_not_depend_on_train_size():
    small = make(train_size=10).splits()
    large = make(train_size=500).splits()
    assert small.test == large.test
    assert small.dev == large.dev
    assert len(large.train) == 500


def test_too_many_problems_for_the_digit_space():
    # one-digit operands give 10 * 10 = 100 pairs; 120 problems cannot be distinct
    with pytest.raises(SpecError) as info:
        make(digits=1, train_size=100, dev_size=10, test_size=10)
    message = str(info.value)
    assert "120" in message
    assert "100" in message
    assert "lower the sizes" in message


def test_more_than_half_the_digit_space_is_refused_with_the_usable_limit():
    # 60 of 100 pairs: refused (sampling would crawl), and the message states the limit of 50
    with pytest.raises(SpecError) as info:
        make(digits=1, train_size=40, dev_size=10, test_size=10)
    message = str(info.value)
    assert "60" in message
    assert "50" in message


def test_a_request_that_fits_is_accepted():
    splits = make(digits=1, train_size=30, dev_size=10, test_size=10).splits()
    assert len(splits.train) == 30


def test_bad_op_names_op():
    with pytest.raises(SpecError) as info:
        make(op="pow")
    message = str(info.value)
    assert "task.op" in message
    assert "'pow'" in message
    assert "add, sub, mul, div" in message


def test_bad_digits():
    with pytest.raises(SpecError, match=r"task\.digits"):
        make(digits=[1, 2, 3])
    with pytest.raises(SpecError, match=r"task\.digits.*1 to 18"):
        make(digits=0)


@pytest.mark.parametrize(
    ("generated", "expected"),
    [
        ("The answer is 1,234.", "1234"),
        ("12 R 3", "12 R 3"),
        ("12R3", "12 R 3"),
        ("So 17 / 5 = 3 R 2", "3 R 2"),
        ("123 + 456 = 579", "579"),
        ("-42", "-42"),
        ("  579\n", "579"),
        ("no number here", ""),
        ("", ""),
    ],
)
def test_answer_extracts_the_last_number(generated, expected):
    assert make().answer(generated) == expected


def test_score_uses_extracted_answers():
    task = make()
    scores = task.score(["The answer is 1,234.", "12 R 3", "7"], ["1234", "12 R 3", "8"])
    assert scores.correct == [True, True, False]
    assert scores.metrics["exact_match"] == pytest.approx(2 / 3)


def test_prompt_and_instruction():
    task = make(op="div")
    assert task.prompt("17 / 5") == "17 / 5 ="
    assert "q R r" in task.instruction
    assert "q R r" not in make(op="add").instruction
