"""Teachers (teachers/): the oracle's Goat-style explanations, a local model, an OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunebench.core.errors import SpecError, TunebenchError, UnknownNameError, UnsupportedError
from tunebench.tasks import build_task
from tunebench.tasks.arithmetic import SYMBOLS, ArithmeticTask, solve
from tunebench.teachers import TEACHERS, build_teacher

# ---------------------------------------------------------------------------------------------- oracle

_EXPRESSION = re.compile(r"[-\d +*()]+$")
_HEAD = re.compile(r"[-\d +*()/]+$")  # a division ("so 8 / 64 = ...") is read whole, then skipped


def arithmetic(op: str, digits: list[int] | int = 3, **options) -> ArithmeticTask:
    sizes = {"train_size": 20, "dev_size": 5, "test_size": 5}
    task = build_task("arithmetic", {"op": op, "digits": digits, **sizes, **options})
    assert isinstance(task, ArithmeticTask)
    return task


def checked_equations(trace: str) -> int:
    """Evaluate every arithmetic equality in a trace ("x + y = z", chains "A = B = C"); fail on a false one.

    Clauses are split at ';', ',' and ':'; in each, the sides of '=' that are plain integer arithmetic
    (the trailing expression of the first side, after words such as "so" or "quotient") must all be equal.
    Returns how many equalities were checked, so a test can insist that there were some.
    """
    checked = 0
    for clause in re.split(r"[;,:]", trace):
        sides = clause.split(" = ")
        if len(sides) < 2:
            continue
        head = _HEAD.search(sides[0])
        values = []
        for side in [head.group(0) if head else "", *sides[1:]]:
            side = side.strip()
            if side and _EXPRESSION.fullmatch(side) and re.search(r"\d", side):
                values.append(eval(side, {"__builtins__": {}}))  # digits, + - * ( ) only
        assert len(set(values)) <= 1, f"false equation {clause.strip()!r} in {trace!r}"
        checked += max(0, len(values) - 1)
    return checked


@st.composite
def problems(draw) -> tuple[str, list[int], int, int]:
    op = draw(st.sampled_from(sorted(SYMBOLS)))
    d1, d2 = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    lo = lambda d: 0 if d == 1 else 10 ** (d - 1)  # noqa: E731
    a = draw(st.integers(lo(d1), 10**d1 - 1))
    b = draw(st.integers(max(lo(d2), 1 if op == "div" else 0), 10**d2 - 1))
    return op, [d1, d2], a, b


@settings(max_examples=400, deadline=None)
@given(problems())
def test_oracle_explanation_ends_with_the_gold_answer_and_every_step_is_true(problem):
    op, digits, a, b = problem
    task = arithmetic(op, digits)
    text = f"{a} {SYMBOLS[op]} {b}"
    (out,) = build_teacher("oracle").teach(task, [text], explain=True)
    gold = solve(op, a, b)
    assert out.answer == gold
    assert task.answer(out.text) == gold == task.answer(gold)
    assert out.explanation == out.text
    assert task.score([out.text], [gold]).correct == [True]
    small = a if len(str(a)) < len(str(b)) else b  # the operand split into place values
    has_steps = {"add": True, "sub": True, "div": a >= b, "mul": sum(c != "0" for c in str(small)) > 1}
    n = checked_equations(out.text)
    assert n >= 1 or not has_steps[op], f"no checkable step in {out.text!r}"


def test_the_equation_checker_catches_a_wrong_step():
    assert checked_equations("4429 * (300 + 7) = 4429 * 300 + 4429 * 7 = 1328700 + 31003 = 1359703") == 3
    with pytest.raises(AssertionError, match="false equation"):
        checked_equations("4429 * (300 + 7) = 4429 * 300 + 4429 * 7 = 1328700 + 31013 = 1359713")
    with pytest.raises(AssertionError, match="false equation"):
        checked_equations("digits from the right: 7 + 8 = 16, write 6 carry 1")


def test_multiplication_is_split_into_partial_products_summed_term_by_term():
    task = arithmetic("mul", [3, 4])
    (out,) = build_teacher("oracle").teach(task, ["397 * 4429"], explain=True)
    assert out.text == (
        "4429 * (300 + 90 + 7) = 4429 * 300 + 4429 * 90 + 4429 * 7 = 1328700 + 398610 + 31003 "
        "= 1328700 + 429613 = 1758313"
    )


def test_multiplication_skips_zero_digits_and_writes_one_digit_products_directly():
    task = arithmetic("mul", [3, 3])
    oracle = build_teacher("oracle")
    out = oracle.teach(task, ["123 * 405", "123 * 4", "123 * 400"], explain=True)
    assert out[0].text.startswith("123 * (400 + 5) = 123 * 400 + 123 * 5 = ")
    assert out[1].text == "492"
    assert out[2].text == "49200"


def test_division_subtracts_multiples_of_the_divisor_and_gives_the_remainder():
    task = arithmetic("div", [4, 2])
    out = build_teacher("oracle").teach(task, ["8914 / 64", "8320 / 64", "8 / 64"], explain=True)
    assert out[0].text == (
        "8914 - 64 * 100 = 8914 - 6400 = 2514; 2514 - 64 * 30 = 2514 - 1920 = 594; "
        "594 - 64 * 9 = 594 - 576 = 18; quotient 100 + 30 + 9 = 139, remainder 18; so 8914 / 64 = 139 R 18"
    )
    assert [o.answer for o in out] == ["139 R 18", "130", "0 R 8"]


def test_addition_and_subtraction_go_digit_by_digit_with_carries_and_borrows():
    oracle = build_teacher("oracle")
    (add,) = oracle.teach(arithmetic("add"), ["357 + 468"], explain=True)
    assert add.text == (
        "digits from the right: 7 + 8 = 15, write 5 carry 1; 5 + 6 + 1 = 12, write 2 carry 1; "
        "3 + 4 + 1 = 8, write 8; so 357 + 468 = 825"
    )
    sub = oracle.teach(arithmetic("sub"), ["457 - 268", "457 - 768"], explain=True)
    assert "7 < 8, borrow: 17 - 8 = 9" in sub[0].text
    assert sub[0].answer == "189"
    assert sub[1].text.startswith("457 < 768, so 457 - 768 = -(768 - 457)")
    assert sub[1].answer == "-311"


def test_oracle_answers_tersely_without_explain_and_marks_foreign_inputs_unanswered():
    task = arithmetic("div", [4, 2])
    out = build_teacher("oracle").teach(task, ["8914 / 64", "8914 + 64", "7 / 0", "hello"], explain=False)
    assert out[0].text == out[0].answer == "139 R 18"
    assert out[0].explanation is None
    assert [o.answer for o in out[1:]] == [None, None, None]
    explained = build_teacher("oracle").teach(task, ["8914 + 64"], explain=True)
    assert explained[0].answer is None


def test_every_split_input_is_explained_to_its_target():
    task = arithmetic("mul", [3, 2], train_size=200)
    train = task.splits().train
    out = build_teacher("oracle").teach(task, [ex.input for ex in train], explain=True)
    assert [o.answer for o in out] == [ex.target for ex in train]


def write_file_task(tmp_path: Path) -> Path:
    path = tmp_path / "qa.jsonl"
    rows = [{"q": f"capital of country {i}?", "a": f"city {i}"} for i in range(30)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_oracle_on_a_file_task_gives_gold_targets_of_known_inputs_and_refuses_to_explain(tmp_path):
    task = build_task("file", {"path": str(write_file_task(tmp_path)), "input": "q", "target": "a"})
    splits = task.splits()
    known = [splits.train[0], splits.test[0]]
    oracle = build_teacher("oracle")
    out = oracle.teach(task, [ex.input for ex in known] + ["not in the data"], explain=False)
    assert [o.answer for o in out] == [known[0].target, known[1].target, None]
    with pytest.raises(UnsupportedError, match=r"cannot explain task .*distill:alpaca"):
        oracle.teach(task, [known[0].input], explain=True)


def test_teacher_registry_names_and_options_are_checked():
    assert "oracle" in TEACHERS
    with pytest.raises(UnknownNameError, match="Did you mean 'oracle'"):
        build_teacher("oracel")
    with pytest.raises(SpecError, match="teacher: unknown key 'temperature'"):
        build_teacher("oracle", {"temperature": 0})


# ----------------------------------------------------------------------------------------------- local


def test_reading_an_answer_from_a_teacher_output():
    from tunebench.teachers.templates import read_answer

    add = arithmetic("add")
    assert read_answer(add, "7 + 8 = 15, carry 1 ...\nAnswer: 825", explain=True) == "825"
    assert read_answer(add, "so the answer is 825.", explain=True) == "825"
    assert read_answer(add, "825", explain=False) == "825"
    assert read_answer(add, "= = = :::", explain=False) is None
    assert read_answer(add, "", explain=True) is None


def test_an_answer_outside_a_classification_tasks_labels_is_unparseable(tmp_path):
    from tunebench.teachers.templates import read_answer

    path = tmp_path / "sentiment.jsonl"
    rows = [{"input": f"review {i}", "target": ["pos", "neg"][i % 2]} for i in range(40)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    task = build_task("file", {"path": str(path)})
    assert task.kind == "classification"
    assert read_answer(task, "pos\nbecause it is nice", explain=False) == "pos"
    assert read_answer(task, "Thinking... Answer: neg", explain=True) == "neg"
    assert read_answer(task, "positive", explain=False) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, r"teacher\.model: the local teacher needs a model"),
        (
            {"model": "tiny-llama", "template": "Q: {question}"},
            r"teacher\.template: unknown placeholder \{question\}",
        ),
        ({"model": "tiny-llama", "template": "Q: {inptu}"}, "Did you mean 'input'"),
        ({"model": "tiny-llama", "explain_template": "Think."}, r"must contain \{input\} or \{prompt\}"),
        ({"model": "tiny-llama", "template": "Q: {input"}, "not a valid template"),
        ({"model": "tiny-llama", "chat": "maybe"}, r"teacher\.chat: expected auto, yes or no"),
    ],
)
def test_local_teacher_options_are_checked(options, message):
    with pytest.raises(SpecError, match=message):
        build_teacher("local", options)


def test_local_teacher_generates_with_its_template_and_counts_unparseable_outputs(tiny_llama):
    from tunebench.evaluate.generate import generate

    task = arithmetic("add")
    inputs = [ex.input for ex in task.splits().train[:6]]
    teacher = build_teacher("local", {"model": "tiny-llama", "chat": "no", "batch_size": 4})
    assert teacher.prompts(task, inputs[:1], explain=False) == [f"{task.instruction}\n\n{inputs[0]} ="]
    assert teacher.prompts(task, inputs[:1], explain=True)[0].endswith(f"Problem: {inputs[0]}\nSolution:")
    out = teacher.teach(task, inputs, explain=False)
    assert len(out) == len(inputs)
    # The same texts as generating directly from those prompts: the teacher adds only the plumbing.
    loaded = teacher._load()
    direct = generate(
        loaded["model"],
        loaded["tokenizer"],
        teacher.prompts(task, inputs, explain=False),
        max_new_tokens=task.max_new_tokens,
        batch_size=4,
        device=loaded["device"],
        bf16=loaded["bf16"],
        stop="\n",
    )
    assert [o.text for o in out] == [d.strip() for d in direct]
    # A random model writes no number: every output is unparseable, and marked so rather than guessed.
    assert all(o.answer == (task.answer(o.text) or None) for o in out)
    assert sum(o.answer is None for o in out) == sum(not re.search(r"\d", o.text) for o in out)
    explained = teacher.teach(task, inputs[:2], explain=True)
    assert all(o.explanation == o.text for o in explained)


def test_local_teacher_with_a_custom_template_and_a_chat_model(tiny_llama):
    task = arithmetic("add")
    chat = build_teacher("local", {"model": "tiny-llama", "template": "Q: {input}\nA:"})
    (prompt,) = chat.prompts(task, ["1 + 2"], explain=False)
    assert "Q: 1 + 2\nA:" in prompt
    assert prompt != "Q: 1 + 2\nA:"  # wrapped in tiny-llama's chat template


def test_local_teacher_refuses_an_encoder(tiny_bert):
    teacher = build_teacher("local", {"model": "tiny-bert"})
    with pytest.raises(UnsupportedError, match="needs a decoder"):
        teacher.teach(arithmetic("add"), ["1 + 2"], explain=False)


# ---------------------------------------------------------------------------------------------- openai


def endpoint_teacher(standin, tmp_path: Path, **options):
    return build_teacher(
        "openai",
        {"base_url": standin.base_url, "model": "standin", "cache_dir": str(tmp_path / "cache"), **options},
    )


def test_openai_teacher_answers_and_a_rerun_costs_no_requests(tmp_path):
    from openai_standin import StandIn

    task = arithmetic("mul", [3, 2])
    train = task.splits().train[:12]
    inputs = [ex.input for ex in train]
    with StandIn() as server:
        first = endpoint_teacher(server, tmp_path, max_concurrency=4)
        out = first.teach(task, inputs, explain=False)
        assert [o.answer for o in out] == [ex.target for ex in train]
        assert server.requests == len(inputs)
        assert first.endpoint.stats.requests == len(inputs)
        # A fresh teacher (a rerun) finds every response on disk: not one more request.
        again = endpoint_teacher(server, tmp_path, max_concurrency=4)
        assert [o.text for o in again.teach(task, inputs, explain=False)] == [o.text for o in out]
        assert server.requests == len(inputs)
        assert again.endpoint.stats.cache_hits == len(inputs)
        assert again.endpoint.stats.requests == 0
        # Asking for explanations is a different request, so it is sent (once).
        explained = again.teach(task, inputs[:3], explain=True)
        assert server.requests == len(inputs) + 3
    assert [o.answer for o in explained] == [ex.target for ex in train[:3]]
    assert all(o.explanation and o.text.endswith(f"Answer: {o.answer}") for o in explained)
    assert "step by step" in server.bodies[-1]["messages"][0]["content"]
    files = list((tmp_path / "cache").rglob("*"))
    assert len([f for f in files if f.suffix == ".json"]) == len(inputs) + 3
    assert not [f for f in files if f.suffix == ".tmp"]


def test_openai_teacher_with_the_completions_api_stops_a_short_answer_at_the_line_end(tmp_path):
    from openai_standin import StandIn

    task = arithmetic("sub")
    with StandIn() as server:
        teacher = endpoint_teacher(server, tmp_path, api="completions", template="{prompt}")
        (out,) = teacher.teach(task, ["457 - 768"], explain=False)
    assert out.answer == "-311"
    assert server.bodies[0]["prompt"] == "457 - 768 ="
    assert server.bodies[0]["stop"] == ["\n"]
    assert server.bodies[0]["temperature"] == 0


def test_openai_teacher_counts_unparseable_replies(tmp_path):
    from openai_standin import StandIn

    task = arithmetic("add")
    with StandIn(reply=lambda p: "I'd rather not." if "1" in p.split("\n")[-1] else "42") as server:
        out = endpoint_teacher(server, tmp_path).teach(task, ["1 + 1", "2 + 2", "31 + 3"], explain=False)
    assert [o.answer for o in out] == [None, "42", None]


def test_openai_requests_run_concurrently_within_the_limit(tmp_path):
    from openai_standin import StandIn

    task = arithmetic("add")
    inputs = [ex.input for ex in task.splits().train[:9]]
    with StandIn(delay=0.2) as server:
        start = time.perf_counter()
        endpoint_teacher(server, tmp_path, max_concurrency=3).teach(task, inputs, explain=False)
        elapsed = time.perf_counter() - start
    assert server.max_in_flight == 3
    assert elapsed < 9 * 0.2  # concurrent, not one after another


@pytest.mark.parametrize("status", [500, 429, 503])
def test_openai_transient_errors_are_retried_with_backoff(tmp_path, status):
    from openai_standin import StandIn

    task = arithmetic("add")
    with StandIn(fail_first=2, fail_status=status) as server:
        teacher = endpoint_teacher(server, tmp_path, max_retries=3, backoff=0.01, max_concurrency=1)
        (out,) = teacher.teach(task, ["2 + 2"], explain=False)
    assert out.answer == "4"
    assert server.requests == 3
    assert teacher.endpoint.stats.retries == 2


def test_openai_gives_up_after_max_retries_with_the_servers_message(tmp_path):
    from openai_standin import StandIn

    with StandIn(fail_first=100) as server:
        teacher = endpoint_teacher(server, tmp_path, max_retries=2, backoff=0.01)
        with pytest.raises(
            TunebenchError, match=r"kept failing .* after 3 attempt\(s\): HTTP 500: try again later"
        ):
            teacher.teach(arithmetic("add"), ["2 + 2"], explain=False)
        assert server.requests == 3
    assert not list((tmp_path / "cache").rglob("*.json"))  # a failure is never cached


def test_openai_client_errors_are_not_retried_and_name_the_model(tmp_path):
    from openai_standin import StandIn

    with StandIn() as server:
        teacher = build_teacher("openai", {"base_url": server.base_url, "model": "nope", "cache": False})
        with pytest.raises(
            TunebenchError, match=r"refused the request for model 'nope': HTTP 404: model 'nope'"
        ):
            teacher.teach(arithmetic("add"), ["2 + 2"], explain=False)
        assert server.requests == 1


def test_an_unreachable_endpoint_is_a_clear_error_naming_the_url(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    teacher = build_teacher(
        "openai",
        {"base_url": url, "model": "m", "max_retries": 1, "backoff": 0.01, "cache_dir": str(tmp_path)},
    )
    with pytest.raises(TunebenchError, match=rf"endpoint {re.escape(url)} is unreachable after 2 attempt"):
        teacher.teach(arithmetic("add"), ["2 + 2"], explain=False)


def test_openai_connection_comes_from_the_environment_and_the_key_never_reaches_the_cache(
    tmp_path, monkeypatch
):
    from openai_standin import StandIn

    with StandIn() as server:
        monkeypatch.setenv("TUNEBENCH_TEACHER_BASE_URL", server.base_url)
        monkeypatch.setenv("TUNEBENCH_TEACHER_MODEL", "standin")
        monkeypatch.setenv("TUNEBENCH_TEACHER_API_KEY", "sk-test-secret")
        teacher = build_teacher("openai", {"cache_dir": str(tmp_path)})
        assert (teacher.options.base_url, teacher.options.model) == (server.base_url, "standin")
        teacher.teach(arithmetic("add"), ["2 + 2"], explain=False)
        monkeypatch.setenv("OTHER_KEY", "sk-other")
        build_teacher("openai", {"api_key_env": "OTHER_KEY", "cache": False}).teach(
            arithmetic("add"), ["2 + 3"], explain=False
        )
    assert server.authorizations == ["Bearer sk-test-secret", "Bearer sk-other"]
    for f in tmp_path.rglob("*.json"):
        assert "sk-test" not in f.read_text()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"model": "m"},
            r"teacher\.base_url: no endpoint given; set base_url=.* or \$TUNEBENCH_TEACHER_BASE_URL",
        ),
        (
            {"model": "m", "base_url": "127.0.0.1:8000/v1"},
            r"teacher\.base_url: expected an http:// or https:// URL",
        ),
        ({"base_url": "http://127.0.0.1:1/v1"}, r"teacher\.model: no model given"),
        (
            {"base_url": "http://h/v1", "model": "m", "api": "chats"},
            r"teacher\.api: expected chat or completions",
        ),
        ({"base_url": "http://h/v1", "model": "m", "max_concurrency": 0}, r"teacher\.max_concurrency"),
        (
            {"base_url": "http://h/v1", "model": "m", "api_key_env": "NOT_SET_ANYWHERE"},
            r"\$NOT_SET_ANYWHERE is not set",
        ),
        ({"base_url": "http://h/v1", "model": "m", "max_concurency": 2}, "Did you mean 'max_concurrency'"),
    ],
)
def test_openai_teacher_options_are_checked(options, message, monkeypatch):
    for name in ("TUNEBENCH_TEACHER_BASE_URL", "OPENAI_BASE_URL", "TUNEBENCH_TEACHER_MODEL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SpecError, match=message):
        build_teacher("openai", options)


def test_without_the_openai_package_the_error_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openai", None)  # `import openai` now raises ImportError
    teacher = build_teacher("openai", {"base_url": "http://127.0.0.1:1/v1", "model": "m", "cache": False})
    with pytest.raises(TunebenchError, match=r"needs the openai package: pip install 'tunebench\[teacher\]'"):
        teacher.teach(arithmetic("add"), ["1 + 1"], explain=False)
