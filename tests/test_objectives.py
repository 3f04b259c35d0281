"""Objectives composed with trainable methods: spec parsing, and distillation, DPO and RL end to end on
tiny-llama (a few steps each; the tiny model learns nothing useful, so these check the machinery and the
records, not quality)."""

from __future__ import annotations

import json

import pytest

from tunebench.config import parse_spec
from tunebench.core import store
from tunebench.core.errors import SpecError, UnknownNameError
from tunebench.objectives import method_class
from tunebench.objectives.distill import FINAL, DistillOrca
from tunebench.objectives.rl import answer_reward
from tunebench.runs.runner import run_experiment
from tunebench.tasks import build_task
from tunebench.teachers import TEACHERS, Teacher, TeacherOutput

TASK = {"name": "arithmetic", "op": "mul", "digits": 2, "train_size": 12, "dev_size": 4, "test_size": 4}
BUDGET = {"steps": 2, "batch_size": 4, "precision": "fp32", "max_length": 96}


def _spec(tmp_path, methods, **extra):
    data = {"name": "obj", "models": ["tiny-llama"], "task": TASK, "methods": methods, "budget": BUDGET}
    return parse_spec({**data, "out": str(tmp_path), **extra})


def _run(tmp_path, methods):
    results = run_experiment(_spec(tmp_path, methods), force=True)
    for r in results:
        assert r["status"] == "ok", r.get("error")
    return results


# -- composition -------------------------------------------------------------------------------------------


def test_a_composed_entry_carries_both_option_sets(tmp_path):
    spec = _spec(tmp_path, [{"name": "lora+dpo", "r": 4, "beta": 0.3}, "full+distill:orca"])
    lora_dpo, full_orca = spec.methods
    assert (lora_dpo.options.r, lora_dpo.objective_options.beta) == (4, 0.3)
    assert full_orca.objective_options.teacher == "oracle"
    assert lora_dpo.all_options()["beta"] == 0.3 and lora_dpo.trains
    method = lora_dpo.make()  # LoRA itself, holding the objective its fit hands over to
    assert type(method) is method_class("lora") and method.objective.name == "dpo"
    assert method.objective.options.beta == 0.3


@pytest.mark.parametrize(
    ("entry", "error", "message"),
    [
        ("zero-shot+dpo", SpecError, "zero-shot does not train a language model"),
        ("probe+distill:alpaca", SpecError, "probe does not train a language model"),
        ("lora+dpp", UnknownNameError, "Did you mean 'dpo'?"),
        ("lora+distill:orac", UnknownNameError, "Did you mean 'distill:orca'"),
        ("lora+dpo+rl", SpecError, "one objective"),
        ({"name": "lora+dpo", "betta": 0.2}, SpecError, "Did you mean 'beta'?"),
        ({"name": "lora+dpo", "reference": "ref"}, SpecError, "expected start or base"),
        ({"name": "lora+distill:alpaca", "teacher": "oracel"}, SpecError, "Did you mean 'oracle'?"),
        ({"name": "lora+rl", "generations": 3}, SpecError, "must be a multiple of generations"),
        ({"name": "lora+dpo", "pairs": "/no/such/pairs.jsonl"}, SpecError, "no such file"),
    ],
)
def test_bad_compositions_are_refused_before_anything_runs(tmp_path, entry, error, message):
    with pytest.raises(error, match=None) as err:
        _spec(tmp_path, [entry])
    assert message in str(err.value)
    assert "methods[0]" in str(err.value)
    assert not (tmp_path / "obj").exists()


def test_unknown_option_lists_method_and_objective_options_apart(tmp_path):
    with pytest.raises(SpecError) as err:
        _spec(tmp_path, [{"name": "lora+rl", "gens": 2}])
    text = str(err.value)
    assert (
        "Method options: alpha, dropout, head, head_lr, init, lp_ft, lr_ratio, r, rslora, target_modules;"
        in text
    )
    assert "rl options: generations, kl, reward_model, rl_lr, sft_lr, sft_steps, temperature;" in text


def test_composed_options_survive_pickling(tmp_path):
    """Ray and multiprocessing executors ship the spec to other processes."""
    import pickle

    (method,) = _spec(tmp_path, [{"name": "lora+dpo", "beta": 0.3, "r": 4}]).methods
    again = pickle.loads(pickle.dumps(method))
    assert again.options == method.options and type(again.options) is type(method.options)
    assert again.objective_options == method.objective_options


def test_run_folder_names_stay_safe():
    name = store.run_name("tiny-llama", "lora+distill:orca", 0)
    assert name == "tiny-llama--lora+distill-orca--s0"
    assert ":" not in name


def test_methods_command_lists_the_objectives(capsys):
    from tunebench.cli.main import main

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("distill:alpaca", "distill:orca", "dpo", "rl"):
        assert name in out


# -- distillation ------------------------------------------------------------------------------------------


def test_distill_alpaca_and_orca_write_their_teacher_data(tmp_path):
    alpaca, orca = _run(tmp_path, ["lora+distill:alpaca", "lora+distill:orca"])
    for result, explained in ((alpaca, False), (orca, True)):
        folder = tmp_path / "obj" / store.run_name("tiny-llama", result["method"], 0)
        rows = [json.loads(line) for line in (folder / "teacher_data.jsonl").read_text().splitlines()]
        assert len(rows) == 12 and all(r["kept"] for r in rows)
        info = result["objective"]
        assert (info["examples"], info["kept"], info["dropped"], info["teacher_accuracy"]) == (12, 12, 0, 1.0)
        assert result["train"]["steps"] == 2 and result["train"]["tokens"] > 0
        assert result["train"]["peak_rss_mb"] > 0
        for r in rows:
            assert r["answer"] == r["gold"]
            if explained:  # a Goat-style trace that ends with the answer
                assert r["target"] != r["gold"] and r["target"].endswith(r["gold"]) and " + " in r["target"]
            else:
                assert r["target"] == r["gold"]
    # explanations are longer, so they cost more tokens per step than bare answers
    assert orca["train"]["tokens"] > alpaca["train"]["tokens"]


class FlakyTeacher(Teacher):
    """Every third output has no answer, some no explanation: a teacher whose text cannot be parsed."""

    name = "test-flaky"

    def teach(self, task, inputs, *, explain):
        outs = []
        for i, text in enumerate(inputs):
            answer = None if i % 3 == 0 else task.solve(text)
            explanation = None if i % 4 == 1 else f"I worked it out: {text}"
            outs.append(TeacherOutput(text=f"garbled {i}", answer=answer, explanation=explanation))
        return outs


if "test-flaky" not in TEACHERS:
    TEACHERS.add("test-flaky", FlakyTeacher)


def test_unparseable_teacher_outputs_are_counted_and_never_trained_on(tmp_path):
    (result,) = _run(tmp_path, [{"name": "lora+distill:orca", "teacher": "test-flaky"}])
    info = result["objective"]
    # inputs 0, 3, 6, 9 lack an answer; of the rest, 1 and 5 lack an explanation
    assert info["dropped_reasons"] == {"no readable answer": 4, "no explanation": 2}
    assert (info["kept"], info["dropped"]) == (6, 6)
    folder = tmp_path / "obj" / store.run_name("tiny-llama", "lora+distill:orca", 0)
    rows = [json.loads(line) for line in (folder / "teacher_data.jsonl").read_text().splitlines()]
    assert [r["kept"] for r in rows].count(False) == 6
    assert all(r["target"] is None for r in rows if not r["kept"])
    # the explanation does not end with the answer, so the target adds a final-answer line
    kept = [r for r in rows if r["kept"]]
    assert all(r["target"].endswith(f"{FINAL} {r['answer']}") for r in kept)


def test_orca_reads_the_final_answer_and_generates_longer():
    task = build_task(
        "arithmetic", {"op": "mul", "digits": 2, "train_size": 4, "dev_size": 1, "test_size": 1}
    )
    orca = DistillOrca(DistillOrca.Options())
    assert orca.final_answer(f"12 * 3 = 36 hmm\n{FINAL} 36") == "36"
    assert orca.final_answer("no marker 42") == "no marker 42"
    orca.longest_target = 40
    assert orca.max_new_tokens(task, task.max_new_tokens) == 48 > task.max_new_tokens


# -- preferences -------------------------------------------------------------------------------------------


def test_dpo_with_auto_pairs_after_sft_keeps_no_second_model(tmp_path):
    (result,) = _run(tmp_path, [{"name": "lora+dpo", "sft_steps": 2, "max_pairs": 8}])
    info = result["objective"]
    assert info["pairs_source"] == "task" and 0 < info["pairs"] <= 8
    assert info["pair_building"]["prompts"] == 8 and info["pair_building"]["seconds"] > 0
    assert info["second_model"] is False and "ref" in info["reference"]
    assert info["phases"]["sft"]["steps"] == 2 and info["phases"]["dpo"]["steps"] == 2
    assert result["train"]["steps"] == 4  # SFT and DPO steps together
    assert result["train"]["tokens"] == info["phases"]["sft"]["tokens"] + info["phases"]["dpo"]["tokens"]
    assert "rewards/accuracies" in info["dpo_metrics"]
    folder = tmp_path / "obj" / store.run_name("tiny-llama", "lora+dpo", 0)
    pairs = [json.loads(line) for line in (folder / "dpo_pairs.jsonl").read_text().splitlines()]
    task = build_task("arithmetic", {k: v for k, v in TASK.items() if k != "name"})
    for p in pairs:  # chosen is gold, rejected a wrong sample of the model
        assert task.answer(p["chosen"]) != task.answer(p["rejected"])
    # the artifact is the trained adapter alone (TRL's reference copy is removed)
    artifact = folder / "artifact"
    assert (artifact / "adapter_model.safetensors").exists() and not (artifact / "ref").exists()
    assert not any(p.name.startswith(".trl-") for p in folder.iterdir())


def test_dpo_from_a_file_against_the_base_reference(tmp_path):
    pairs = tmp_path / "prefs.jsonl"
    rows = [
        {"prompt": f"{a} * 11 =", "chosen": f" {a * 11}", "rejected": f" {a * 11 + 1}"} for a in range(10, 18)
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lora, full = _run(
        tmp_path,
        [
            {"name": "lora+dpo", "pairs": str(pairs), "reference": "base", "beta": 0.5},
            {"name": "full+dpo", "pairs": str(pairs)},
        ],
    )
    assert lora["objective"]["pairs"] == 8 and lora["objective"]["pairs_source"] == str(pairs)
    assert lora["objective"]["reference"].startswith("base model: adapter disabled")
    assert full["objective"]["reference"].startswith("model at the start of DPO")
    assert lora["objective"]["second_model"] is False and full["objective"]["second_model"] is False
    for r in (lora, full):
        assert r["train"]["steps"] == 2 and r["train"]["tokens"] > 0


def test_dpo_refuses_a_bad_pairs_file_with_its_line(tmp_path):
    pairs = tmp_path / "prefs.jsonl"
    pairs.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "a"}) + "\n")
    (result,) = run_experiment(_spec(tmp_path, [{"name": "lora+dpo", "pairs": str(pairs)}]), force=True)
    assert result["status"] == "failed"
    assert f"{pairs}:1: chosen and rejected are identical" in result["error"]


# -- RL ----------------------------------------------------------------------------------------------------


def test_the_reward_is_whether_the_task_reads_the_gold_answer():
    task = build_task(
        "arithmetic", {"op": "mul", "digits": 2, "train_size": 4, "dev_size": 1, "test_size": 1}
    )
    reward = answer_reward(task)
    assert reward(["p"] * 3, [" 1,234", " 1233", " so it is 1234"], ["1234"] * 3) == [1.0, 0.0, 1.0]


def test_rl_runs_a_few_grpo_steps(tmp_path):
    (result,) = _run(tmp_path, [{"name": "lora+rl", "generations": 2}])
    info = result["objective"]
    assert result["train"]["steps"] == 2 and result["train"]["tokens"] > 0
    assert info["prompts_seen"] == 4 and 0.0 <= info["rl_metrics"]["reward"] <= 1.0
    assert info["reward"].startswith("verifiable")
    # a random model is never right: every group's rewards are all 0, so neither step had a signal
    assert info["steps_without_signal"] == 2
    assert info["warnings"] == [
        "in 2 of 2 GRPO steps every group's answers got the same reward, so those steps taught nothing "
        "(raise sft_steps, generations or temperature)"
    ]


def test_rl_with_a_reward_model(tmp_path):
    """A reward model scores the answers instead of the task (here a random tiny encoder: plumbing only)."""
    (result,) = _run(tmp_path, [{"name": "lora+rl", "generations": 2, "reward_model": "tiny-bert"}])
    info = result["objective"]
    assert info["reward"] == "tiny-bert" and result["train"]["steps"] == 2
    # a random one-output head gives real-valued scores, not the verifiable reward's 0/1
    assert info["rl_metrics"]["reward"] not in (0.0, 1.0)
    assert info["steps_without_signal"] == 0  # real-valued scores always differ within a group
    assert "warnings" not in info


def test_rl_after_sft_records_both_phases(tmp_path):
    (result,) = _run(tmp_path, [{"name": "lora+rl", "generations": 2, "sft_steps": 3, "rl_lr": 5e-4}])
    phases = result["objective"]["phases"]
    assert phases["sft"]["steps"] == 3 and phases["rl"]["steps"] == 2
    assert result["train"]["steps"] == 5
    assert result["train"]["tokens"] == phases["sft"]["tokens"] + phases["rl"]["tokens"]
    # one sequence of steps in the log (the report's loss curve): the RL steps follow the SFT steps
    log = tmp_path / "obj" / store.run_name("tiny-llama", "lora+rl", 0) / "log.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "train_step"] == [1, 2, 3, 4, 5]


def test_warm_start_uses_its_own_learning_rate(monkeypatch):
    """sft_lr sets the SFT phase's lr and leaves the budget's (which the preference or RL phase uses) alone."""
    from types import SimpleNamespace

    from tunebench.objectives import sft
    from tunebench.train.budget import Budget

    seen = []
    monkeypatch.setattr(sft, "supervised", lambda m, c, p, t, budget: (seen.append(budget) or "stats", 0))
    ctx = SimpleNamespace(budget=Budget(steps=20, lr=1e-5, epochs=None))
    method = SimpleNamespace()
    assert sft.warm_start(method, ctx, ["p"], ["t"], steps=7, lr=2e-3) == "stats"
    assert sft.warm_start(method, ctx, ["p"], ["t"], steps=7, lr=None) == "stats"
    assert [(b.steps, b.lr) for b in seen] == [(7, 2e-3), (7, 1e-5)]
    assert ctx.budget.lr == 1e-5 and method.truncated == 0
