"""tunebench serve, end to end on tiny-llama: a real server on a loopback port, driven by the official
`openai` client. Every served kind of artifact must answer exactly as the artifact does when run directly
through transformers/PEFT; adapters in one mixed batch must answer as each does alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import torch

from tunebench.serve.options import Limits, ServeOptions
from tunebench.serve.server import Background, build
from tunebench.serve.synthetic import random_lora

PROMPTS = ["12 + 34 =", "what is the number", "7 + 7 =", "reply with the answer only"]
N = 8  # tokens per answer: enough to tell adapters apart on a random model


# -- artifacts of every kind, made on tiny-llama ----------------------------------------------------------


def _prefix_adapter(base: str, out: Path) -> Path:
    from peft import PrefixTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(model, PrefixTuningConfig(num_virtual_tokens=4, task_type="CAUSAL_LM"))
    with torch.no_grad():
        for p in peft_model.prompt_encoder.parameters():
            p.normal_(0, 3.0)  # large enough to change the greedy answers
    peft_model.save_pretrained(str(out))
    return out


def _full_model(base: str, out: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(4)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(base).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def artifacts(tiny_llama, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    base = tiny_llama.path
    return {
        "a": random_lora(base, root / "a", seed=1, scale=0.3),
        "b": random_lora(base, root / "b", seed=2, scale=0.3),
        "dora": random_lora(base, root / "dora", seed=5, scale=0.3, use_dora=True),
        "prefix": _prefix_adapter(base, root / "prefix"),
        "full": _full_model(base, root / "full"),
    }


@pytest.fixture(scope="module")
def extra_dir(tiny_llama, tmp_path_factory) -> Path:
    """The --adapter-dir: one adapter the admin endpoint may load by name."""
    root = tmp_path_factory.mktemp("adapter-dir")
    random_lora(tiny_llama.path, root / "extra", seed=9, scale=0.3)
    return root


@pytest.fixture(scope="module")
def server(artifacts, extra_dir):
    options = ServeOptions(
        model="tiny-llama",
        adapters=artifacts,
        adapter_dir=extra_dir,
        device="cpu",
        precision="fp32",  # answers compared across lanes and with merging must not depend on bf16 rounding
        limits=Limits(max_tokens=64, max_body_bytes=20_000, batch_wait_ms=300),
    )
    with Background(build(options)) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def complete(client, model: str, prompt: str, **kw) -> str:
    r = client.completions.create(model=model, prompt=prompt, max_tokens=N, temperature=0, **kw)
    return r.choices[0].text


def reference(tiny_llama, artifact: Path | None, kind: str, prompt: str) -> str:
    """What the artifact itself generates (greedy), through transformers/PEFT, without the server."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = artifact if kind == "full" else tiny_llama.path
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama.path)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    if kind == "peft":
        model = PeftModel.from_pretrained(model, str(artifact)).eval()
    enc = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=N, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


# -- what is served, and how --------------------------------------------------------------------------------


def test_models_lists_every_artifact_with_its_batching(client):
    listed = {m.id: m for m in client.models.list().data}
    assert set(listed) == {"tiny-llama", "a", "b", "dora", "prefix", "full"}
    batching = {name: m.model_extra["batching"] for name, m in listed.items()}
    # LoRA joins the shared lane; PEFT refuses DoRA in a mixed batch; prefix tuning and whole models run alone.
    assert batching == {
        "tiny-llama": "shared",
        "a": "shared",
        "b": "shared",
        "dora": "own",
        "prefix": "own",
        "full": "own",
    }


@pytest.mark.parametrize(
    ("name", "kind"),
    [("tiny-llama", "base"), ("a", "peft"), ("dora", "peft"), ("prefix", "peft"), ("full", "full")],
)
def test_every_kind_answers_as_the_artifact_does_directly(client, tiny_llama, artifacts, name, kind):
    for prompt in PROMPTS[:2]:
        assert complete(client, name, prompt) == reference(tiny_llama, artifacts.get(name), kind, prompt)


def test_adapters_change_the_answers(client):
    # The prefix adapter is left out: on a random tiny model its greedy answer can coincide with the base's
    # (seen on a fresh clone); its serving is checked against the adapter served alone in the test below.
    answers = {name: complete(client, name, PROMPTS[0]) for name in ("tiny-llama", "a", "b", "full")}
    assert len(set(answers.values())) == len(answers), answers  # else a routing mistake would go unseen


def test_concurrent_requests_for_two_adapters_match_each_served_alone(client, server):
    names = ["a", "b", "tiny-llama"]
    alone = {(n, p): complete(client, n, p) for n in names for p in PROMPTS}
    stats = dict(server.built.engine.stats)
    jobs = [(n, p) for n in names for p in PROMPTS] * 2
    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(lambda job: complete(client, *job), jobs))
    assert together == [alone[job] for job in jobs]
    mixed = server.built.engine.stats["mixed_batches"] - stats["mixed_batches"]
    rows = server.built.engine.stats["rows"] - stats["rows"]
    assert mixed >= 1, "the concurrent requests never shared a batch"
    assert rows == len(jobs)


def test_own_lane_adapters_are_right_under_concurrency_too(client):
    names = ["a", "prefix", "full", "dora"]
    alone = {n: complete(client, n, PROMPTS[1]) for n in names}
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda n: complete(client, n, PROMPTS[1]), names * 2))
    assert together == [alone[n] for n in names * 2]


# -- the OpenAI surface ----------------------------------------------------------------------------------


def test_chat_streaming_gives_the_same_text_as_chat(client):
    messages = [{"role": "user", "content": "what is the number"}]
    whole = client.chat.completions.create(model="a", messages=messages, max_tokens=N, temperature=0)
    assert whole.object == "chat.completion" and whole.choices[0].message.role == "assistant"
    assert whole.usage.completion_tokens <= N and whole.usage.prompt_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="a",
            messages=messages,
            max_tokens=N,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completion_streaming_and_stop_strings(client):
    full = complete(client, "b", PROMPTS[0])
    streamed = client.completions.create(
        model="b", prompt=PROMPTS[0], max_tokens=N, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == full
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    assert stop.strip()
    cut = client.completions.create(model="b", prompt=PROMPTS[0], max_tokens=N, temperature=0, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == full[: full.index(stop)]


def test_sampling_with_a_seed_repeats(client):
    def sample(seed):
        r = client.completions.create(model="a", prompt=PROMPTS[0], max_tokens=N, temperature=1.0, seed=seed)
        return r.choices[0].text

    assert sample(1) == sample(1)
    assert len({sample(s) for s in range(4)}) > 1


def test_a_list_of_prompts_gives_one_choice_each(client):
    r = client.completions.create(model="a", prompt=PROMPTS[:3], max_tokens=N, temperature=0)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert [c.text for c in r.choices] == [complete(client, "a", p) for p in PROMPTS[:3]]


# -- errors and limits ------------------------------------------------------------------------------------


def test_unknown_model_is_404_naming_the_served_ones(client):
    with pytest.raises(openai.NotFoundError) as e:
        complete(client, "c", PROMPTS[0])
    message = str(e.value)
    assert "'c' is not served" in message and "tiny-llama" in message and "prefix" in message


def test_max_tokens_over_the_limit_is_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="a", prompt="x", max_tokens=65)
    assert "max_tokens: 65 is over this server's limit of 64" in str(e.value)
    with pytest.raises(openai.BadRequestError, match="max_completion_tokens"):
        client.chat.completions.create(
            model="a", messages=[{"role": "user", "content": "x"}], max_completion_tokens=1000
        )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"n": 2}, "n: 2 is not supported"),
        ({"logprobs": 2}, "logprobs: 2 is not supported"),
        ({"temperature": 3}, "temperature"),
        ({"stop": ["1", "2", "3", "4", "5"]}, "stop: at most 4"),
    ],
)
def test_unsupported_or_bad_fields_are_400_naming_them(client, extra, message):
    with pytest.raises(openai.BadRequestError, match=message):
        client.completions.create(model="a", prompt="x", max_tokens=2, **extra)


def _post(url: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_body_over_the_limit_is_413(server):
    body = json.dumps({"model": "a", "prompt": "x" * 30_000}).encode()
    status, data = _post(f"{server.url}/v1/completions", body)
    assert status == 413 and "limit of 20000 bytes" in data["error"]["message"]


def test_malformed_json_is_400(server):
    status, data = _post(f"{server.url}/v1/completions", b'{"model": "a", "prompt": ')
    assert status == 400 and data["error"]["type"] == "invalid_request_error"


def test_too_many_concurrent_requests_get_429(tiny_llama):
    options = ServeOptions(model="tiny-llama", device="cpu", limits=Limits(max_concurrent=1))
    with Background(build(options)) as srv:
        hold = threading.Event()
        srv.built.engine.call(hold.wait)  # the worker is busy: the first request waits in the queue
        api = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0, timeout=30)
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(complete, api, "tiny-llama", PROMPTS[0])
            deadline = time.monotonic() + 10
            while srv.built.engine.active < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            with pytest.raises(openai.RateLimitError, match="limit of 1 concurrent"):
                complete(api, "tiny-llama", PROMPTS[0])
            hold.set()
            assert first.result(timeout=30)  # the admitted one is answered


def test_api_key_guards_everything_but_health(tiny_llama):
    options = ServeOptions(model="tiny-llama", device="cpu", api_key="s3cret")
    with Background(build(options)) as srv:
        with urllib.request.urlopen(f"{srv.url}/health", timeout=10) as r:
            assert r.status == 200
        status, data = _post(f"{srv.url}/v1/completions", b"{}")
        assert status == 401 and data["error"]["code"] == "invalid_api_key"
        status, _ = _post(f"{srv.url}/admin/adapters", b'{"name": "x"}', {"Authorization": "Bearer wrong"})
        assert status == 401
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{srv.url}/v1", api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="s3cret", max_retries=0)
        assert [m.id for m in good.models.list().data] == ["tiny-llama"]
        # Without max_tokens a chat answer may fill what the 512-token context leaves, not fail on it.
        r = good.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "hi"}])
        assert r.usage.prompt_tokens + r.usage.completion_tokens <= 512


# -- loading and unloading at run time, merged mode ---------------------------------------------------------


def _admin(server, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"{server.url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_adapters_load_and_unload_without_a_restart(server, client):
    before = complete(client, "b", PROMPTS[0])
    assert _admin(server, "DELETE", "/admin/adapters/b")[0] == 200
    with pytest.raises(openai.NotFoundError):
        complete(client, "b", PROMPTS[0])
    assert "b" in _admin(server, "GET", "/admin/adapters")[1]["loadable"]
    status, entry = _admin(server, "POST", "/admin/adapters", {"name": "b"})
    assert status == 201 and entry["batching"] == "shared"
    assert complete(client, "b", PROMPTS[0]) == before

    status, _ = _admin(server, "POST", "/admin/adapters", {"name": "extra"})  # from --adapter-dir, by name
    assert status == 201 and complete(client, "extra", PROMPTS[0]) != before
    assert _admin(server, "DELETE", "/admin/adapters/extra")[0] == 200


@pytest.mark.parametrize(("name", "status"), [("../a", 400), ("/etc", 400), ("nothere", 404), ("a", 409)])
def test_admin_loads_only_known_names(server, name, status):
    code, data = _admin(server, "POST", "/admin/adapters", {"name": name})
    assert code == status, data


def test_the_base_model_cannot_be_unloaded(server):
    assert _admin(server, "DELETE", "/admin/adapters/tiny-llama")[0] == 409
    assert _admin(server, "DELETE", "/admin/adapters/nothere")[0] == 404


def test_merged_mode_serves_one_adapter_with_the_same_answers(artifacts, client):
    expected = [complete(client, "a", p) for p in PROMPTS]
    # fp32 on both sides: in bf16 (a CPU with AMX) merging rounds W + BA differently from W x + B A x, and a
    # tiny random model's near-equal logits then flip a greedy token
    options = ServeOptions(
        model="tiny-llama", adapters={"a": artifacts["a"]}, merged="a", device="cpu", precision="fp32"
    )
    with Background(build(options)) as srv:
        merged = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        assert [m.id for m in merged.models.list().data] == ["a"]
        assert [complete(merged, "a", p) for p in PROMPTS] == expected
        assert _admin(srv, "DELETE", "/admin/adapters/a")[0] == 409


# -- run stores, artifacts, flags -------------------------------------------------------------------------


def _run(root: Path, name: str, record: dict, artifact=None) -> Path:
    folder = root / "exp" / name
    (folder / "artifact").mkdir(parents=True)
    if artifact is not None:
        artifact(folder / "artifact")
    (folder / "result.json").write_text(json.dumps({"schema": 1, **record}))
    return folder


def test_a_run_store_is_served_by_run_name_and_skips_say_why(tiny_llama, tmp_path):
    from tunebench.serve.artifacts import discover_runs

    ok = {"status": "ok", "model": "tiny-llama", "method": "lora"}
    _run(tmp_path, "tiny-llama--lora--s0", ok, lambda p: random_lora(tiny_llama.path, p, seed=1))
    prompt = {"format": "chat", "shots": [{"input": "1 + 2", "target": "3"}]}
    task = {
        "name": "arithmetic-add-1x1",
        "registered_as": "arithmetic",
        "op": "add",
        "digits": 1,
        "train_size": 10,
        "dev_size": 5,
        "test_size": 5,
    }
    _run(
        tmp_path,
        "tiny-llama--few-shot--s0",
        {**ok, "method": "few-shot", "config": {"task": task}},
        lambda p: (p / "prompt.json").write_text(json.dumps(prompt)),
    )
    _run(tmp_path, "tiny-llama--full--s0", {"status": "failed", "error": "boom"})
    _run(
        tmp_path,
        "other--lora--s0",
        {**ok, "model": "other"},
        lambda p: random_lora(tiny_llama.path, p, seed=2),
    )
    _run(
        tmp_path,
        "tiny-llama--pickled--s0",
        ok,
        lambda p: ((p / "adapter_config.json").write_text("{}"), (p / "adapter_model.bin").write_bytes(b"x")),
    )

    found = discover_runs(tmp_path)
    assert set(found.found) == {"tiny-llama--lora--s0", "tiny-llama--few-shot--s0", "other--lora--s0"}
    reasons = dict((Path(w).name, why) for w, why in found.skipped)
    assert "did not finish" in reasons["tiny-llama--full--s0"]
    assert (
        "only safetensors" in reasons["tiny-llama--pickled--s0"]
        and "adapter_model.bin" in reasons["tiny-llama--pickled--s0"]
    )

    built = build(ServeOptions(model="tiny-llama", runs=[tmp_path], device="cpu"))
    try:
        routes = built.engine.routes
        assert set(routes) == {"tiny-llama", "tiny-llama--lora--s0", "tiny-llama--few-shot--s0"}
        assert any("made for model 'other'" in why for _, why in built.skipped)
        few = routes["tiny-llama--few-shot--s0"].template
        chat = few.chat([{"role": "user", "content": "4 + 5 ="}])
        assert chat[0]["content"].startswith("Compute the result.") and chat[0]["content"].endswith("1 + 2 =")
        assert chat[1] == {"role": "assistant", "content": "3"} and chat[2]["content"] == "4 + 5 ="
    finally:
        built.engine.stop()


def test_stacked_lora_computes_what_peft_mixed_batches_do(tiny_llama, tmp_path):
    """The server's mixed-batch path (serve/mixlora.py) against PEFT's adapter_names, logit for logit:
    adapters of different ranks on different layers, and base-model rows, in one batch."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tunebench.serve.mixlora import StackedLora, is_plain

    a = random_lora(tiny_llama.path, tmp_path / "a", seed=1, r=4, scale=0.3)
    b = random_lora(
        tiny_llama.path, tmp_path / "b", seed=2, r=8, scale=0.3, target_modules=["q_proj", "v_proj"]
    )
    dora = random_lora(tiny_llama.path, tmp_path / "d", seed=3, use_dora=True)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama.path, dtype=torch.float32)
    peft = PeftModel.from_pretrained(base, str(a), adapter_name="a")
    peft.load_adapter(str(b), adapter_name="b")
    peft.load_adapter(str(dora), adapter_name="d")
    peft.eval()
    assert is_plain(peft, "a") and is_plain(peft, "b") and not is_plain(peft, "d")
    rows = ["a", "b", None, "a", "b"]
    ids = torch.randint(3, 300, (len(rows), 7), generator=torch.Generator().manual_seed(0))
    stacked = StackedLora(peft)
    stacked.update({"a", "b"})
    assert stacked.covers(rows) and not stacked.covers(["a", "d"])
    with torch.inference_mode():
        expected = peft(input_ids=ids, adapter_names=[r or "__base__" for r in rows]).logits
        with stacked.active(rows):
            got = peft(input_ids=ids).logits
        again = peft(input_ids=ids, adapter_names=[r or "__base__" for r in rows]).logits
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    assert (got[0] - got[2]).abs().max() > 1e-3  # the adapters do change the rows they serve
    assert torch.equal(again, expected)  # nothing is left behind (hooks, disabled layers)


def test_stop_holdback_helpers():
    from tunebench.serve.decode import find_stop, held_back

    assert held_back("abc\n##", ("###",)) == 2
    assert held_back("abc", ("###",)) == 0
    assert find_stop("ab###cd", ("###", "cd"), 0) == 2


def test_cli_serves_on_loopback_and_bad_flags_name_the_flag(tiny_llama, tmp_path, capsys):
    from tunebench.cli.main import main

    assert main(["serve", "--model", "tiny-llama", "--adapter", "noequals"]) == 2
    assert "--adapter 'noequals': expected NAME=PATH" in capsys.readouterr().err
    assert main(["serve", "--model", "tiny-llama", "--adapter", f"x={tmp_path / 'none'}"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["serve", "--model", "tiny-llama", "--max-tokens", "0"]) == 2
    assert "--max-tokens: must be at least 1" in capsys.readouterr().err

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TUNEBENCH_API_KEY": "k"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tunebench.cli.main",
            "serve",
            "--model",
            "tiny-llama",
            "--device",
            "cpu",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not come up in 90 s"
                time.sleep(0.3)
        api = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
        assert complete(api, "tiny-llama", PROMPTS[0]) is not None
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- the artifacts a real comparison leaves behind ----------------------------------------------------------


def _task_and_predictions(run: Path) -> tuple[object, list[dict]]:
    """A finished run's task, rebuilt from its recorded config, and its recorded predictions."""
    from tunebench.tasks import build_task

    record = json.loads((run / "result.json").read_text())
    task_config = {
        k: v
        for k, v in record["config"]["task"].items()
        if k not in ("name", "registered_as", "data_fingerprint", "sizes")
    }
    task = build_task(record["config"]["task"]["registered_as"], task_config)
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    return task, rows


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """A finished comparison on tiny-llama: every built-in method, a few steps."""
    from tunebench.cli.main import main

    out = tmp_path_factory.mktemp("runs")
    flags = [
        "--model",
        "tiny-llama",
        "--task-opt",
        "train_size=64",
        "--task-opt",
        "dev_size=8",
        "--task-opt",
        "test_size=8",
        "--task-opt",
        "digits=2",
        "--steps",
        "4",
        "--budget",
        "batch_size=8",
        "--methods",
        "zero-shot,few-shot,lora,full",
    ]
    assert main(["compare", *flags, "--out", str(out), "--name", "srv"]) == 0
    return out / "srv"


def test_a_finished_comparison_is_served_and_reproduces_its_predictions(compared):
    built = build(ServeOptions(model="tiny-llama", runs=[compared], device="cpu"))
    with Background(built) as srv:
        api = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0, timeout=60)
        listed = {m.id: m.model_extra for m in api.models.list().data}
        runs = {f"tiny-llama--{m}--s0": m for m in ("zero-shot", "few-shot", "lora", "full")}
        assert set(listed) == {"tiny-llama", *runs}
        assert {name: listed[name]["batching"] for name in runs} == {
            "tiny-llama--zero-shot--s0": "shared",
            "tiny-llama--few-shot--s0": "shared",
            "tiny-llama--lora--s0": "shared",
            "tiny-llama--full--s0": "own",
        }
        for name, method in runs.items():
            task, rows = _task_and_predictions(compared / name)
            for row in rows[:3]:
                if method in ("lora", "full"):  # trained on the plain prompt
                    r = api.completions.create(
                        model=name,
                        prompt=task.prompt(row["input"]),
                        max_tokens=task.max_new_tokens,
                        temperature=0,
                    )
                    text = r.choices[0].text
                else:  # a chat model: the run's instruction and shots come from the server
                    r = api.chat.completions.create(
                        model=name,
                        temperature=0,
                        max_tokens=max(32, 2 * task.max_new_tokens),  # as prompting.py allows
                        messages=[{"role": "user", "content": task.prompt(row["input"])}],
                    )
                    text = r.choices[0].message.content
                assert text == row["prediction"], (name, row)


@pytest.fixture(scope="module")
def compared_menu(tmp_path_factory):
    """A finished comparison on tiny-llama of the methods the menu widened with: PEFT's other adapter
    families, a LoRA whose init rewrites the base (exported as a plain LoRA), GaLore (whole weights) and
    Spectrum-style partial fine-tuning."""
    from tunebench.cli.main import main

    out = tmp_path_factory.mktemp("menu-runs")
    spec = {
        "name": "menu",
        "models": ["tiny-llama"],
        "task": {"name": "arithmetic", "digits": 2, "train_size": 64, "dev_size": 8, "test_size": 8},
        "budget": {"steps": 4, "batch_size": 8, "precision": "fp32"},
        "methods": [
            {"name": "vera"},
            {"name": "loha"},
            {"name": "lokr"},
            {"name": "oft"},
            {"name": "adalora"},
            {"name": "lora", "init": "pissa"},
            {"name": "galore"},
            {"name": "partial", "select": "snr"},
            {"name": "adapter"},
        ],
        "out": str(out),
    }
    path = out / "spec.yaml"
    path.write_text(json.dumps(spec))
    assert main(["compare", str(path)]) == 0
    return out / "menu"


def test_the_new_methods_runs_are_served_and_reproduce_their_predictions(compared_menu):
    """Every run of the widened menu is served, answering as its run predicted, except the bottleneck
    adapter, skipped with the reason. LoRA loads first and takes the shared lane (here after adalora and
    galore alphabetically); adapter types PEFT cannot hold beside it, whole models and trained tensors over
    the base (partial) get lanes of their own."""
    built = build(ServeOptions(model="tiny-llama", runs=[compared_menu], device="cpu", precision="fp32"))
    with Background(built) as srv:
        api = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0, timeout=60)
        listed = {m.id: m.model_extra for m in api.models.list().data}
        names = sorted(p.name for p in compared_menu.iterdir() if (p / "result.json").exists())
        skipped = {Path(w).parent.name: why for w, why in built.skipped}
        assert set(skipped) == {"tiny-llama--adapter--s0"}, skipped
        assert "have no place in the base model" in skipped["tiny-llama--adapter--s0"]
        assert set(names) == (set(listed) - {"tiny-llama"}) | set(skipped)
        batching = {name: listed[name]["batching"] for name in names if name in listed}
        assert batching == {
            name: "shared" if name == "tiny-llama--lora--s0" else "own" for name in batching
        }, batching
        for name in set(names) & set(listed):
            task, rows = _task_and_predictions(compared_menu / name)
            for row in rows[:3]:
                r = api.completions.create(
                    model=name,
                    prompt=task.prompt(row["input"]),
                    max_tokens=task.max_new_tokens,
                    temperature=0,
                )
                assert r.choices[0].text == row["prediction"], (name, row)
