"""Built-in arithmetic, generated the way the Goat paper does it (Liu & Low, 2023).

Operands have a fixed number of digits each and are drawn uniformly; division gives a quotient and a
remainder ("q R r"). Splits are disjoint by construction (every (a, b) pair appears once across all
splits) and deterministic in the seed. The test split is drawn first, so changing `train_size` never
changes the test set.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from tunebench.core.typed import require
from tunebench.tasks.base import TASKS, Example, Splits, Task, TaskEntry

SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_NUMBER = re.compile(r"-?\d+(?:\s*R\s*\d+)?")


@dataclass
class ArithmeticOptions:
    op: str = "add"
    """Operation: add, sub, mul or div."""
    digits: list[int] | int = 3
    """Digits per operand: one number for both, or [first, second]."""
    train_size: int = 5000
    dev_size: int = 200
    test_size: int = 200
    seed: int = 0
    """Seed of the data (the run seed, which drives training, is separate)."""

    def check(self, where: str) -> None:
        require(self.op in SYMBOLS, f"{where}.op", f"expected one of {', '.join(SYMBOLS)}, got {self.op!r}")
        digits = self.operand_digits()
        require(len(digits) == 2, f"{where}.digits", f"expected one number or two, got {self.digits!r}")
        require(all(1 <= d <= 18 for d in digits), f"{where}.digits", "each operand needs 1 to 18 digits")
        require(self.train_size >= 1, f"{where}.train_size", "must be at least 1")
        require(self.dev_size >= 1, f"{where}.dev_size", "must be at least 1")
        require(self.test_size >= 1, f"{where}.test_size", "must be at least 1")
        capacity = _count(digits[0]) * _count(digits[1])
        total = self.train_size + self.dev_size + self.test_size
        require(
            total <= capacity // 2,
            where,
            f"{total} distinct problems asked for, but {digits} digits allow at most {capacity // 2} "
            f"(half of their {capacity} pairs, so that sampling stays fast); "
            "lower the sizes or raise the digits",
        )

    def operand_digits(self) -> list[int]:
        return [self.digits, self.digits] if isinstance(self.digits, int) else list(self.digits)


def _count(d: int) -> int:
    return 10 if d == 1 else 9 * 10 ** (d - 1)


def _operand(rng: random.Random, d: int) -> int:
    return rng.randint(0, 9) if d == 1 else rng.randint(10 ** (d - 1), 10**d - 1)


def solve(op: str, a: int, b: int) -> str:
    if op == "add":
        return str(a + b)
    if op == "sub":
        return str(a - b)
    if op == "mul":
        return str(a * b)
    q, r = divmod(a, b)
    return f"{q} R {r}" if r else str(q)


# Step-by-step solutions in the manner of Goat (Liu & Low, 2023): each one continues the prompt "a op b ="
# and ends with the final answer, so that `ArithmeticTask.answer` (the last number) reads it.


def explain(op: str, a: int, b: int) -> str:
    if op == "add":
        return _explain_add(a, b)
    if op == "sub":
        return _explain_sub(a, b)
    if op == "mul":
        return _explain_mul(a, b)
    return _explain_div(a, b)


def _digits(n: int, width: int) -> list[int]:
    """The digits of n from the right (ones first), padded with zeros to `width`."""
    return [(n // 10**i) % 10 for i in range(width)]


def _explain_add(a: int, b: int) -> str:
    width = max(len(str(a)), len(str(b)))
    steps, carry = [], 0
    for x, y in zip(_digits(a, width), _digits(b, width)):
        total = x + y + carry
        terms = f"{x} + {y}" + (f" + {carry}" if carry else "")
        carry = total // 10
        steps.append(f"{terms} = {total}, write {total % 10}" + (f" carry {carry}" if carry else ""))
    if carry:
        steps.append(f"write the carry {carry}")
    return f"digits from the right: {'; '.join(steps)}; so {a} + {b} = {a + b}"


def _borrow_steps(a: int, b: int) -> list[str]:
    """Column subtraction of b from a (a >= b), ones first, with borrows."""
    width = len(str(a))
    steps, borrow = [], 0
    for x, y in zip(_digits(a, width), _digits(b, width)):
        top = f"{x} - {borrow}" if borrow else f"{x}"
        value = x - borrow
        if value < y:
            steps.append(f"{top} < {y}, borrow: {value + 10} - {y} = {value + 10 - y}")
            borrow = 1
        else:
            steps.append(f"{top} - {y} = {value - y}")
            borrow = 0
    return steps


def _explain_sub(a: int, b: int) -> str:
    if a >= b:
        return f"digits from the right: {'; '.join(_borrow_steps(a, b))}; so {a} - {b} = {a - b}"
    return (
        f"{a} < {b}, so {a} - {b} = -({b} - {a}); digits from the right: {'; '.join(_borrow_steps(b, a))}; "
        f"{b} - {a} = {b - a}, so {a} - {b} = {a - b}"
    )


def _explain_mul(a: int, b: int) -> str:
    # Goat splits the operand with fewer digits into its place values (the second one on a tie).
    big, small = (b, a) if len(str(a)) < len(str(b)) else (a, b)
    parts = [d * 10**i for i, d in enumerate(_digits(small, len(str(small)))) if d][::-1]
    if len(parts) <= 1:
        return f"{a * b}" if big == a or small == 0 else f"{big} * {small} = {a * b}"
    chain = [
        f"{big} * ({' + '.join(map(str, parts))})",
        " + ".join(f"{big} * {p}" for p in parts),
    ]
    terms = [big * p for p in parts]
    while len(terms) > 1:  # sum term by term, the last two first
        chain.append(" + ".join(map(str, terms)))
        terms = [*terms[:-2], terms[-2] + terms[-1]]
    chain.append(str(terms[0]))
    return " = ".join(chain)


def _explain_div(a: int, b: int) -> str:
    q, r = divmod(a, b)
    final = f"{q} R {r}" if r else f"{q}"
    if a < b:
        return f"{a} < {b}, so {a} / {b} = {final}"
    steps, parts, rest = [], [], a
    for i in reversed(range(len(str(q)))):  # subtract the largest multiple b * (d * 10^i) at each place
        d = (rest // (b * 10**i)) % 10 if rest >= b * 10**i else 0
        if not d:
            continue
        m = d * 10**i
        steps.append(f"{rest} - {b} * {m} = {rest} - {b * m} = {rest - b * m}")
        parts.append(m)
        rest -= b * m
    total = f"{' + '.join(map(str, parts))} = {q}" if len(parts) > 1 else f"{q}"
    return f"{'; '.join(steps)}; quotient {total}, remainder {r}; so {a} / {b} = {final}"


class ArithmeticTask(Task):
    kind = "generation"

    def __init__(self, options: ArithmeticOptions) -> None:
        self.options = options
        d1, d2 = options.operand_digits()
        self.name = f"arithmetic-{options.op}-{d1}x{d2}"
        # Enough room for the digits of the answer, a sign, a remainder and the end token.
        self.max_new_tokens = d1 + d2 + 6
        extra = " Write the remainder as 'q R r' when there is one." if options.op == "div" else ""
        self.instruction = f"Compute the result. Reply with the number only.{extra}"

    def splits(self) -> Splits:
        o = self.options
        d1, d2 = o.operand_digits()
        rng = random.Random(f"arithmetic:{o.op}:{d1}:{d2}:{o.seed}")
        seen: set[tuple[int, int]] = set()

        def draw(n: int) -> list[Example]:
            out: list[Example] = []
            while len(out) < n:
                a, b = _operand(rng, d1), _operand(rng, d2)
                if o.op == "div" and b == 0:
                    continue
                if (a, b) in seen:
                    continue
                seen.add((a, b))
                out.append(Example(f"{a} {SYMBOLS[o.op]} {b}", solve(o.op, a, b)))
            return out

        test = draw(o.test_size)
        dev = draw(o.dev_size)
        train = draw(o.train_size)
        return Splits(train=train, dev=dev, test=test)

    def prompt(self, text: str) -> str:
        return f"{text} ="

    def _parse(self, text: str) -> tuple[int, int] | None:
        """The operands of an input of this task's operation ("a op b"), or None when it is not one."""
        m = re.fullmatch(rf"\s*(\d+)\s*{re.escape(SYMBOLS[self.options.op])}\s*(\d+)\s*", text)
        if m is None or (self.options.op == "div" and int(m.group(2)) == 0):
            return None
        return int(m.group(1)), int(m.group(2))

    def solve(self, text: str) -> str | None:
        operands = self._parse(text)
        return solve(self.options.op, *operands) if operands else None

    def explain(self, text: str) -> str | None:
        operands = self._parse(text)
        return explain(self.options.op, *operands) if operands else None

    def answer(self, generated: str) -> str:
        """The last number in the output, so a chatty 'The answer is 1,234.' still counts."""
        found = _NUMBER.findall(generated.replace(",", ""))
        return " R ".join(p.strip() for p in found[-1].split("R")) if found else ""

    def describe(self) -> dict:
        return {**super().describe(), "options": vars(self.options)}


TASKS.add(
    "arithmetic",
    TaskEntry(
        options=ArithmeticOptions,
        factory=ArithmeticTask,
        summary="Goat-style arithmetic (add, sub, mul, div; digits per operand); exact match on the answer",
        examples=["--task arithmetic --task-opt op=mul --task-opt digits=2"],
    ),
)
