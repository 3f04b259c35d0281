"""The experiment spec: parse_spec, load_yaml and typed.build, and the errors they give."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tunebench.config import ExperimentSpec, load_yaml, parse_spec
from tunebench.core.errors import SpecError, UnknownNameError
from tunebench.core.typed import build, coerce
from tunebench.train.budget import Budget


def spec(**data) -> ExperimentSpec:
    return parse_spec({"models": ["tiny-llama"], "methods": ["zero-shot"], **data}, source="exp.yaml")


def error(exc_type=SpecError, **data) -> str:
    with pytest.raises(exc_type) as info:
        spec(**data)
    return str(info.value)


# --- a valid spec -------------------------------------------------------------------------------


def test_minimal_spec_parses_with_defaults():
    s = parse_spec({"models": ["tiny-llama"], "methods": ["zero-shot"]})
    assert s.name == "experiment"
    assert s.models == ["tiny-llama"]
    assert s.task.name == "arithmetic"
    assert s.task.options == {}
    assert [m.name for m in s.methods] == ["zero-shot"]
    assert s.seeds == [0]
    assert s.budget == Budget()
    assert s.methods[0].budget == Budget()
    assert s.out == "runs"
    assert s.source == "<flags>"


def test_full_spec_parses():
    s = spec(
        name="my-exp",
        models="tiny-llama, tiny-bert",
        task={"name": "arithmetic", "op": "mul", "digits": 3},
        methods=["zero-shot", {"name": "few-shot", "k": 4}, {"name": "lora", "r": 8}, "full"],
        seeds=[0, 1],
        budget={"steps": 10, "batch_size": 4},
        out="elsewhere",
    )
    assert s.name == "my-exp"
    assert s.models == ["tiny-llama", "tiny-bert"]
    assert s.task.options == {"op": "mul", "digits": 3}
    assert [m.name for m in s.methods] == ["zero-shot", "few-shot", "lora", "full"]
    assert s.methods[1].options.k == 4
    assert s.methods[2].options.r == 8
    assert s.methods[2].options.alpha == 32.0
    assert s.seeds == [0, 1]
    assert (s.budget.steps, s.budget.batch_size, s.budget.lr) == (10, 4, None)  # unset: each method's own
    assert all((m.budget.steps, m.budget.batch_size) == (10, 4) for m in s.methods)
    assert s.out == "elsewhere"


# --- each method's own recipe -----------------------------------------------------------------------


def test_an_unset_learning_rate_is_the_methods_own():
    s = spec(methods=["zero-shot", "lora", "full", "prefix"], budget={"steps": 10})
    by_name = {m.name: m.budget for m in s.methods}
    assert by_name["full"].lr == 2e-5 and by_name["full"].weight_decay == 0.01
    assert by_name["lora"].lr == 5e-4 and by_name["lora"].warmup == 0.06
    assert by_name["prefix"].lr == 1e-2
    assert by_name["zero-shot"].lr is None  # a method that does not train has no learning rate


def test_a_given_learning_rate_wins_over_the_recipe():
    s = spec(methods=["lora", {"name": "full", "lr": 1e-4}], budget={"lr": 3e-3, "warmup": 0.0})
    by_name = {m.name: m.budget for m in s.methods}
    assert (by_name["lora"].lr, by_name["lora"].warmup) == (3e-3, 0.0)  # the experiment's, for every method
    assert by_name["full"].lr == 1e-4  # the method entry's own, above both


def test_lr_grid_auto_is_the_methods_grid():
    s = spec(methods=["lora", {"name": "full", "lr_grid": [1e-5, 3e-5]}], budget={"lr_grid": "auto"})
    by_name = {m.name: m.budget for m in s.methods}
    assert by_name["lora"].lr_grid == [2e-4, 5e-4, 1e-3, 2e-3]
    assert by_name["full"].lr_grid == [1e-5, 3e-5]
    assert spec(methods=["lora"], budget={"lr_grid": "1e-4, 1e-3"}).methods[0].budget.lr_grid == [1e-4, 1e-3]


def test_every_training_method_declares_a_recipe_with_a_source():
    from tunebench.methods import METHODS

    for name, cls in METHODS.items():
        if cls.trains:
            assert cls.recipe is not None, name
            assert cls.recipe.source and cls.recipe.lr in cls.recipe.lr_grid, name


def test_methods_given_as_a_comma_separated_string():
    s = spec(methods="zero-shot, lora")
    assert [m.name for m in s.methods] == ["zero-shot", "lora"]


def test_seeds_given_as_a_string_or_a_number():
    assert spec(seeds="0,1,2").seeds == [0, 1, 2]
    assert spec(seeds=3).seeds == [3]


# --- unknown keys and names ---------------------------------------------------------------------


def test_unknown_top_level_key_suggests_the_close_match():
    message = error(methds=["lora"])
    assert "exp.yaml" in message
    assert "unknown key 'methds'" in message
    assert "Did you mean 'methods'?" in message


def test_unknown_budget_key_suggests_the_close_match():
    message = error(budget={"stepz": 10})
    assert "exp.yaml: budget" in message
    assert "unknown key 'stepz'" in message
    assert "Did you mean 'steps'?" in message
    assert "batch_size" in message  # lists what is expected


def test_unknown_method_suggests_the_close_match():
    message = error(UnknownNameError, methods=["lorra"])
    assert "unknown method 'lorra'" in message
    assert "Did you mean 'lora'" in message
    assert "Known methods:" in message and all(
        m in message for m in ("few-shot", "full", "lora", "zero-shot")
    )


def test_unknown_task_suggests_the_close_match():
    message = error(UnknownNameError, task="arithmetc")
    assert "unknown task 'arithmetc'" in message
    assert "Did you mean 'arithmetic'?" in message


def test_unknown_method_option_names_it_and_lists_the_options():
    message = error(methods=[{"name": "lora", "rank": 8}])
    assert "methods[0] (lora)" in message
    assert "unknown key 'rank'" in message
    assert (
        "Method options: alpha, dropout, head, head_lr, init, lp_ft, lr_ratio, r, rslora, target_modules"
        in message
    )
    assert "budget overrides:" in message and "lr" in message


def test_an_option_of_a_method_without_options():
    message = error(methods=[{"name": "zero-shot", "k": 3}])
    assert "methods[0] (zero-shot): unknown key 'k'" in message
    assert "Method options: (none)" in message


def test_unknown_task_option_names_it():
    message = error(task={"name": "arithmetic", "digit": 2})
    assert "exp.yaml: task: unknown key 'digit'" in message
    assert "Did you mean 'digits'?" in message


def test_bad_task_option_value_names_the_option():
    message = error(task={"name": "arithmetic", "op": "pow"})
    assert "task.op" in message and "'pow'" in message


# --- values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("lr", [0, -1e-3])
def test_non_positive_lr_names_lr(lr):
    message = error(budget={"lr": lr})
    assert "exp.yaml: budget.lr" in message
    assert "must be positive" in message


def test_zero_steps_names_steps():
    message = error(budget={"steps": 0})
    assert "exp.yaml: budget.steps: must be at least 1, got 0" in message


def test_bad_method_option_value_names_it():
    message = error(methods=[{"name": "lora", "r": 0}])
    assert "methods[0] (lora).r" in message
    assert "at least 1, got 0" in message


def test_per_method_budget_override_applies_only_to_that_method():
    s = spec(
        methods=[{"name": "lora", "lr": 2e-3, "r": 4}, {"name": "full"}],
        budget={"lr": 1e-4, "steps": 20},
    )
    lora, full = s.methods
    assert lora.budget.lr == 2e-3
    assert lora.budget.steps == 20  # other fields come from the experiment budget
    assert lora.overrides == {"lr": 2e-3}
    assert lora.options.r == 4
    assert full.budget.lr == 1e-4
    assert full.overrides == {}
    assert s.budget.lr == 1e-4


def test_bad_per_method_override_names_the_method():
    message = error(methods=["zero-shot", {"name": "full", "lr": 0}])
    assert "methods[1] (full).lr" in message


def test_duplicated_method_names_are_rejected():
    message = error(methods=["lora", "zero-shot", {"name": "lora", "r": 4}])
    assert "exp.yaml: methods: lora listed twice" in message


def test_models_and_methods_are_required():
    with pytest.raises(SpecError, match="models: name at least one model"):
        parse_spec({"methods": ["lora"]})
    with pytest.raises(SpecError, match="methods: name at least one method"):
        parse_spec({"models": ["tiny-llama"], "methods": []})


def test_name_must_be_usable_as_a_folder():
    message = error(name="../oops")
    assert "exp.yaml: name" in message and "'../oops'" in message


def test_bad_seed_names_seeds():
    message = error(seeds=["abc"])
    assert "exp.yaml: seeds" in message and "'abc'" in message


def test_boolean_seed_is_not_an_integer():
    message = error(seeds=[True])
    assert "exp.yaml: seeds" in message and "expected an integer" in message


def test_boolean_is_not_accepted_as_an_integer():
    message = error(budget={"steps": True})
    assert "exp.yaml: budget.steps: expected an integer, got True" in message
    message = error(methods=[{"name": "lora", "r": False}])
    assert "(lora).r: expected an integer, got False" in message


def test_boolean_is_not_accepted_as_a_number():
    message = error(budget={"lr": True})
    assert "budget.lr: expected a number, got True" in message


def test_non_numeric_string_names_the_key():
    message = error(budget={"batch_size": "lots"})
    assert "budget.batch_size: expected an integer, got 'lots'" in message


# --- task given as a data file ----------------------------------------------------------------------


def test_task_given_as_a_jsonl_path_becomes_the_file_task():
    s = spec(task="data/train.jsonl")
    assert s.task.name == "file"
    assert s.task.options == {"path": "data/train.jsonl"}


def test_task_mapping_named_by_a_csv_path_keeps_its_options():
    s = spec(task={"name": "data/train.CSV", "input": "text", "target": "label"})
    assert s.task.name == "file"
    assert s.task.options == {"path": "data/train.CSV", "input": "text", "target": "label"}


def test_file_task_options_are_checked_without_reading_the_file():
    message = error(task={"name": "missing.jsonl", "kind": "regression"})
    assert "task.kind" in message and "'regression'" in message


# --- YAML -----------------------------------------------------------------------------------------


def test_load_yaml_coerces_1e_3_to_float(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(
        "models: [tiny-llama]\n"
        "methods:\n"
        "  - zero-shot\n"
        "  - {name: lora, lr: 1e-3}\n"
        "budget:\n"
        "  lr: 5e-4\n"
        "  steps: '12'\n"
    )
    data = load_yaml(path)
    assert data["budget"]["lr"] == "5e-4"  # YAML 1.1 reads 5e-4 as a string ...
    s = parse_spec(data, source=str(path))
    assert s.name == "exp"  # named after the file
    assert s.budget.lr == 5e-4  # ... and the spec makes it a number
    assert isinstance(s.budget.lr, float)
    assert s.budget.steps == 12
    assert s.methods[1].budget.lr == 1e-3
    assert isinstance(s.methods[1].budget.lr, float)


def test_yaml_that_is_not_a_mapping_names_the_file(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- lora\n- full\n")
    with pytest.raises(SpecError) as info:
        load_yaml(path)
    assert str(path) in str(info.value)
    assert "expected a mapping" in str(info.value)


def test_empty_yaml_names_the_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(SpecError, match=r"empty\.yaml: expected a mapping"):
        load_yaml(path)


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("models: [tiny-llama\nmethods: lora\n")
    with pytest.raises(SpecError) as info:
        load_yaml(path)
    assert str(info.value).startswith(f"{path}: not valid YAML")


def test_missing_yaml_names_the_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError, match=r"nope\.yaml: no such spec file"):
        load_yaml(path)


def test_yaml_name_key_wins_over_the_file_name(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: other\nmodels: [tiny-llama]\nmethods: [full]\n")
    assert parse_spec(load_yaml(path)).name == "other"


# --- typed.build and coerce directly --------------------------------------------------------------


@dataclass
class Opts:
    n: int = 1
    x: float = 0.5
    flag: bool = False
    names: list[str] | None = None
    sizes: list[int] | int = 3
    limit: int | None = None


def test_build_coerces_values():
    o = build(
        Opts,
        {"n": "4", "x": "1e-3", "flag": "yes", "names": "a, b", "sizes": "3,2", "limit": 7.0},
        "opts",
    )
    assert o == Opts(n=4, x=0.001, flag=True, names=["a", "b"], sizes=[3, 2], limit=7)
    assert isinstance(o.x, float)
    assert isinstance(o.limit, int)


def test_union_keeps_a_value_that_already_has_a_member_type():
    assert build(Opts, {"sizes": 5}, "opts").sizes == 5
    assert build(Opts, {"sizes": [5, 6]}, "opts").sizes == [5, 6]
    assert build(Opts, {"limit": None}, "opts").limit is None


def test_build_rejects_unknown_keys_with_suggestions():
    with pytest.raises(SpecError) as info:
        build(Opts, {"flags": True}, "opts")
    assert str(info.value) == (
        "opts: unknown key 'flags'. Did you mean 'flag'? Expected one of: n, x, flag, names, sizes, limit"
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("n", True, "opts.n: expected an integer, got True"),
        ("n", 1.5, "opts.n: expected an integer, got 1.5"),
        ("x", False, "opts.x: expected a number, got False"),
        ("x", "fast", "opts.x: expected a number, got 'fast'"),
        ("flag", "maybe", "opts.flag: expected true or false, got 'maybe'"),
        ("limit", True, "opts.limit: expected an integer, got True"),
        ("names", {"a": 1}, "opts.names[0]: expected a string, got {'a': 1}"),
    ],
)
def test_build_rejects_bad_values_naming_the_key(key, value, expected):
    with pytest.raises(SpecError) as info:
        build(Opts, {key: value}, "opts")
    assert str(info.value) == expected


def test_coerce_numbers():
    assert coerce("1e-3", float, "w") == 0.001
    assert coerce(2, float, "w") == 2.0
    assert coerce(3.0, int, "w") == 3
    assert coerce("12", int, "w") == 12
    assert coerce(5, str, "w") == "5"


def test_a_model_listed_twice_is_rejected():
    with pytest.raises(SpecError, match="models: tiny-llama listed twice"):
        parse_spec({"models": ["tiny-llama", "tiny-llama"], "methods": ["zero-shot"]}, source="exp.yaml")
