"""A model behind an OpenAI-compatible endpoint as a contestant (`openai:MODEL@URL`), end to end.

`tunebench compare` with a tiny local model and an endpoint served by a stand-in on 127.0.0.1: the
endpoint runs the prompting methods and records what they cost there (tokens, latency per 1k examples);
a trained method on it is refused with the reason; a rerun sends no request.
"""

from __future__ import annotations

import json

import pytest
from openai_standin import StandIn

from tunebench.cli.main import main
from tunebench.core.errors import SpecError, UnsupportedError
from tunebench.methods import METHODS
from tunebench.methods.base import require_access
from tunebench.models import resolve_model

TEST_SIZE = 12


def compare(out, base_url: str, methods: str = "zero-shot,few-shot,lora") -> int:
    return main(
        [
            "compare",
            "--model",
            "tiny-llama",
            "--model",
            f"openai:standin@{base_url}#max_concurrency=4",
            "--methods",
            methods,
            "--task-opt",
            "train_size=64",
            "--task-opt",
            "dev_size=8",
            "--task-opt",
            f"test_size={TEST_SIZE}",
            "--task-opt",
            "digits=2",
            "--steps",
            "2",
            "--budget",
            "batch_size=8",
            "--out",
            str(out),
            "--name",
            "api",
        ]
    )


def result(exp, name: str) -> dict:
    return json.loads((exp / name / "result.json").read_text())


def test_an_endpoint_competes_with_prompting_and_records_its_cost(tmp_path):
    with StandIn() as server:
        compare(tmp_path, server.base_url)
        sent = server.requests
        exp = tmp_path / "api"
        zero, few = result(exp, "openai-standin--zero-shot--s0"), result(exp, "openai-standin--few-shot--s0")
        for r in (zero, few):
            assert r["status"] == "ok", r["error"]
            # The stand-in computes the answer, so every test answer is right: the plumbing carried the
            # question to the endpoint and the reply back into scoring.
            assert r["metrics"]["exact_match"] == 1.0
            assert r["params"] == {"trainable": 0, "total": None, "trainable_pct": 0.0}
            assert r["drift"] is None
            usage = r["usage"]
            assert usage["endpoint"] == server.base_url and usage["model"] == "standin"
            assert usage["requests"] == usage["examples"] == TEST_SIZE
            assert usage["completion_tokens"] == TEST_SIZE  # one number per reply
            per_1k = usage["per_1k_examples"]
            assert per_1k["prompt_tokens"] == pytest.approx(usage["prompt_tokens"] * 1000 / TEST_SIZE)
            assert per_1k["completion_tokens"] == pytest.approx(1000)
            assert usage["latency_ms"]["median"] > 0
            assert usage["max_concurrency"] == 4
            artifact = exp / f"openai-standin--{r['method']}--s0" / "artifact" / "prompt.json"
            prompt = json.loads(artifact.read_text())
            assert prompt["format"] == "chat"
            assert json.loads(prompt["rendered"])[-1]["content"].endswith("{input} =")
        # Shots cost prompt tokens: few-shot sends the solved examples with every question.
        assert few["usage"]["prompt_tokens"] > zero["usage"]["prompt_tokens"]
        chat = [b for b in server.bodies if "messages" in b]
        assert max(len(b["messages"]) for b in chat) == 2 * 8 + 1  # k=8 shots, then the question
        lora = result(exp, "openai-standin--lora--s0")
        assert lora["status"] == "failed"
        assert "lora needs white box access" in lora["error"]
        assert "only the prompting methods (zero-shot, few-shot) run on it" in lora["error"]
        # The local model ran the same comparison beside it, with its parameter counts.
        local = result(exp, "tiny-llama--lora--s0")
        assert local["status"] == "ok" and local["params"]["total"] > 0 and local["usage"] is None
        assert (exp / "report.html").exists()
        # The report puts the endpoint's cost beside the local model's weights: tokens per 1k examples.
        from tunebench.report import make_report
        from tunebench.report.data import API_COLUMN

        entries = {(e.model, e.method): e for e in make_report(exp).entries}
        api = entries[("openai-standin", "few-shot")]
        assert api.extra[API_COLUMN] == f"{few['usage']['per_1k_examples']['prompt_tokens'] + 1000:,.0f}"
        assert API_COLUMN not in entries[("tiny-llama", "lora")].extra
        # A rerun reuses the finished runs: the endpoint is not asked again.
        compare(tmp_path, server.base_url)
        assert server.requests == sent


def test_an_unreachable_endpoint_fails_its_runs_with_the_url_and_the_grid_goes_on(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    main(
        [
            "compare",
            "--model",
            f"openai:m@{url}#max_retries=0",
            "--methods",
            "zero-shot",
            "--task-opt",
            "train_size=16",
            "--task-opt",
            "dev_size=4",
            "--task-opt",
            "test_size=4",
            "--out",
            str(tmp_path),
            "--name",
            "down",
        ]
    )
    r = result(tmp_path / "down", "openai-m--zero-shot--s0")
    assert r["status"] == "failed"
    assert f"endpoint {url} is unreachable" in r["error"]


def test_a_models_entry_for_an_endpoint_is_validated():
    model = resolve_model("openai:gpt-4o-mini@https://api.example.com/v1#api=completions&timeout=30")
    assert (model.name, model.kind, model.access) == ("openai-gpt-4o-mini", "endpoint", "black box")
    with pytest.raises(SpecError, match=r"expected openai:MODEL@URL"):
        resolve_model("openai:gpt-4o-mini")
    with pytest.raises(SpecError, match="Did you mean 'max_concurrency'"):
        resolve_model("openai:m@http://127.0.0.1:1/v1#max_concurency=2")
    with pytest.raises(SpecError, match=r"\.api: expected chat or completions"):
        resolve_model("openai:m@http://127.0.0.1:1/v1#api=chats")


@pytest.mark.parametrize("name", ["lora", "full", "probe", "logprob", "prefix"])
def test_methods_that_need_weights_or_log_probs_are_refused_on_an_endpoint(name):
    endpoint = resolve_model("openai:m@http://127.0.0.1:1/v1")
    method = METHODS.get(name)()
    with pytest.raises(UnsupportedError, match=f"{name} needs (white|gray) box access"):
        require_access(method, endpoint)
    for prompting in ("zero-shot", "few-shot"):
        require_access(METHODS.get(prompting)(), endpoint)  # allowed


def test_the_completions_api_sends_plain_text_shots_and_stops_at_the_line_end(tmp_path):
    with StandIn() as server:
        code = main(
            [
                "compare",
                "--model",
                f"openai:standin@{server.base_url}#api=completions",
                "--methods",
                "few-shot",
                "--task-opt",
                "train_size=16",
                "--task-opt",
                "dev_size=4",
                "--task-opt",
                "test_size=4",
                "--out",
                str(tmp_path),
                "--name",
                "plain",
            ]
        )
    assert code == 0
    r = result(tmp_path / "plain", "openai-standin--few-shot--s0")
    assert r["status"] == "ok" and r["metrics"]["exact_match"] == 1.0
    body = server.bodies[0]
    assert body["stop"] == ["\n"]
    lines = body["prompt"].split("\n")
    assert len(lines) == 2 + 8 + 1 and lines[-1].endswith(" =")  # instruction, blank, 8 shots, question
