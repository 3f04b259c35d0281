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

from tunebench.tasks.base import TASKS, Example, Splits, Task, TaskEntry
from tunebench.typed import require

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
            out = []
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
