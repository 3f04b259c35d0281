"""The cost estimator: exact shapes, the papers' figures, tunebench's own measurements, and clear errors."""

from __future__ import annotations

import json
import warnings

import pytest

from tunebench.core.errors import SpecError, TunebenchError, UnknownNameError
from tunebench.estimate import Setting, estimate, resolve_arch, resolve_device
from tunebench.estimate.costs import estimable_methods, method_cost, method_options
from tunebench.estimate.model import GIB
from tunebench.estimate.shapes import from_config

GB = 1e9  # the papers' gigabytes

# ---- shapes: parameter counts are exact ---------------------------------------------------------------


def _configs():
    from transformers import (
        BertConfig,
        BertModel,
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        OPTConfig,
        OPTForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    small = dict(num_hidden_layers=2, num_attention_heads=4, vocab_size=300)
    return [
        (LlamaConfig(hidden_size=64, intermediate_size=96, num_key_value_heads=2, **small), LlamaForCausalLM),
        (LlamaConfig(hidden_size=64, intermediate_size=96, tie_word_embeddings=True, **small), LlamaForCausalLM),
        (GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=300, n_positions=128), GPT2LMHeadModel),
        (BertConfig(hidden_size=64, intermediate_size=128, max_position_embeddings=128, **small), BertModel),
        (Gemma3TextConfig(hidden_size=64, intermediate_size=96, num_key_value_heads=1, head_dim=32, **small),
         Gemma3ForCausalLM),
        (Qwen2Config(hidden_size=64, intermediate_size=96, num_key_value_heads=2, **small), Qwen2ForCausalLM),
        (OPTConfig(hidden_size=64, ffn_dim=128, max_position_embeddings=128, word_embed_proj_dim=64, **small),
         OPTForCausalLM),
    ]  # fmt: skip


def test_parameter_counts_match_models_built_from_the_same_configs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cfg, cls in _configs():
            data = {**cfg.to_dict(), "architectures": [cls.__name__]}
            arch = from_config(data, cls.__name__, "test")
            model = cls(cfg)
            assert arch.params == sum(p.numel() for p in model.parameters()), cls.__name__


def test_a_classification_head_replaces_the_lm_head_in_the_counts():
    """tunebench's `head: classifier` is the trunk (AutoModel, without BERT's pooler) and one Linear layer
    with a bias on its pooled states: its count is the arch's with `classes` set."""
    import dataclasses

    from transformers import BertConfig, BertModel, LlamaConfig, LlamaModel

    from tunebench.methods.heads import SequenceClassifier
    from tunebench.methods.pooling import drop_pooler

    small = dict(num_hidden_layers=2, num_attention_heads=4, vocab_size=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cfg, trunk_cls, base in (
            (LlamaConfig(hidden_size=64, intermediate_size=96, tie_word_embeddings=False, **small),
             LlamaModel, "LlamaForCausalLM"),
            (BertConfig(hidden_size=64, intermediate_size=128, max_position_embeddings=128, **small),
             BertModel, "BertModel"),
        ):  # fmt: skip
            arch = dataclasses.replace(
                from_config({**cfg.to_dict(), "architectures": [base]}, base, "t"), classes=7
            )
            model = SequenceClassifier(drop_pooler(trunk_cls(cfg)), "mean", 7)
            assert arch.params == sum(p.numel() for p in model.parameters()), trunk_cls.__name__


def test_presets_have_the_published_sizes():
    # Llama 2 model cards: 6,738,415,616 / 13,015,864,320 / 68,976,648,192 parameters.
    assert resolve_arch("7B").params == 6_738_415_616
    assert resolve_arch("13b").params == 13_015_864_320
    assert resolve_arch("70B").params == 68_976_648_192
    assert 65.0e9 < resolve_arch("65B").params < 65.5e9  # LLaMA-1 65B
    assert 174e9 < resolve_arch("gpt3").params < 176e9  # GPT-3 175B
    assert resolve_arch("smollm2-135m").params == 134_515_008  # as counted on the loaded model


def test_a_registered_model_and_a_folder_give_their_config_shapes(tiny_llama):
    from pathlib import Path

    by_name = resolve_arch("tiny-llama")
    by_folder = resolve_arch(tiny_llama.path)
    by_file = resolve_arch(str(Path(tiny_llama.path) / "config.json"))
    config = json.loads((Path(tiny_llama.path) / "config.json").read_text())
    assert by_name.hidden == by_folder.hidden == by_file.hidden == config["hidden_size"]
    assert by_name.params == by_folder.params == by_file.params


def test_low_rank_and_prompt_parameter_counts_match_peft():
    import torch
    from peft import (
        AdaLoraConfig,
        BOFTConfig,
        IA3Config,
        LoHaConfig,
        LoKrConfig,
        LoraConfig,
        OFTConfig,
        PrefixTuningConfig,
        PromptTuningConfig,
        VeraConfig,
        get_peft_model,
    )
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=300)  # fmt: skip
    arch = from_config(cfg.to_dict(), "t", "test")
    cases = [
        ("lora", LoraConfig(r=4, target_modules="all-linear"), {"r": 4}),
        (
            "lora",
            LoraConfig(r=4, target_modules=["q_proj", "v_proj"]),
            {"r": 4, "target_modules": ["q_proj", "v"]},
        ),
        ("dora", LoraConfig(r=4, target_modules="all-linear", use_dora=True), {"r": 4}),
        ("ia3", IA3Config(task_type="CAUSAL_LM"), {}),
        ("vera", VeraConfig(r=8, target_modules="all-linear"), {"r": 8}),
        ("loha", LoHaConfig(r=4, target_modules="all-linear"), {"r": 4}),
        # LoKr: 64 = 8 × 8, 96 = 8 × 12, 32 = 4 × 8; r=4 decomposes W2 (4 < 12/2), r=16 keeps it full
        ("lokr", LoKrConfig(r=4, target_modules="all-linear"), {"r": 4}),
        ("lokr", LoKrConfig(r=16, target_modules="all-linear"), {"r": 16}),
        (
            "lokr",
            LoKrConfig(r=2, target_modules="all-linear", decompose_both=True),
            {"r": 2, "decompose_both": True},
        ),
        (
            "lokr",
            LoKrConfig(r=4, target_modules="all-linear", decompose_factor=4),
            {"r": 4, "decompose_factor": 4},
        ),
        ("oft", OFTConfig(r=0, oft_block_size=16, target_modules="all-linear"), {"block_size": 16}),
        (
            "oft",
            OFTConfig(r=0, oft_block_size=8, target_modules="all-linear", block_share=True),
            {"block_size": 8, "block_share": True},
        ),
        ("boft", BOFTConfig(boft_block_size=4, target_modules="all-linear"), {"block_size": 4}),
        (
            "adalora",
            AdaLoraConfig(init_r=6, target_r=2, total_step=10, target_modules="all-linear"),
            {"init_r": 6, "target_r": 2},
        ),
        ("prefix", PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5), {"virtual_tokens": 5}),
        ("prompt", PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5), {"virtual_tokens": 5}),
    ]
    for name, config, options in cases:
        torch.manual_seed(0)
        model = get_peft_model(LlamaForCausalLM(cfg), config)
        peft_count = sum(p.numel() for p in model.parameters() if p.requires_grad)
        declared, opts = method_cost(name).declared, method_options(name, options)
        assert declared.added(arch, opts) == peft_count, (name, options)
        # every parameter PEFT adds is declared: trained, or frozen (AdaLoRA's rank per matrix)
        peft_total = sum(p.numel() for p in model.parameters())
        added = declared.added(arch, opts) + declared.frozen_added(arch, opts)
        assert arch.params + added == peft_total, name


# ---- the papers' figures --------------------------------------------------------------------------------


def test_qlora_makes_65b_trainable_on_one_48gb_gpu():
    """Dettmers et al. (2023): QLoRA fine-tunes LLaMA 65B on a single 48 GB GPU. Their Guanaco setting:
    LoRA r=64 on every linear layer, gradient checkpointing; here batch 1 × 512 tokens, mixed precision
    (fp32 master weights and Adam moments for the adapters, the conservative choice)."""
    arch, gpu = resolve_arch("65B"), resolve_device("A6000")
    q = estimate(arch, "qlora", gpu, Setting(batch=1, seq_len=512), {"r": 64})
    assert q.peak_ckpt < 48 * GIB and q.fits_ckpt
    assert q.memory["quantization"] < 1.1 * GB  # 0.127 bits per weight with double quantization
    no_dq = estimate(arch, "qlora", gpu, Setting(batch=1, seq_len=512), {"r": 64, "double_quant": False})
    assert no_dq.memory["quantization"] > 3.5 * q.memory["quantization"]  # 0.5 bits without it
    lora16 = estimate(arch, "lora", gpu, Setting(batch=1, seq_len=512), {"r": 64})
    assert not lora16.fits_ckpt  # the 16-bit base alone is 130 GB


def test_full_fine_tuning_65b_in_16_bit_with_adam_needs_over_780gb():
    """Dettmers et al. (2023), introduction: regular 16-bit fine-tuning of LLaMA 65B needs more than 780 GB.
    Their accounting is 16-bit weights and gradients with 32-bit Adam moments (12 bytes a weight);
    mixed precision with an fp32 master copy (ZeRO's 16 bytes a weight) needs more still."""
    arch, gpu = resolve_arch("65B"), resolve_device("H100-80GB")
    for precision in ("bf16-adam32", "mixed"):
        e = estimate(arch, "full", gpu, Setting(batch=1, seq_len=512, precision=precision))
        assert e.peak_ckpt > 780 * GB, precision
    e = estimate(arch, "full", gpu, Setting(batch=1, seq_len=512, precision="bf16-adam32"))
    states = e.memory["weights"] + e.memory["gradients"] + e.memory["optimizer"]
    assert states == pytest.approx(780 * GB, rel=0.01)  # 12 bytes × 65.2 B weights


def test_lora_paper_gpt3_175b_memory_and_checkpoint():
    """Hu et al. (2021), §4.2: on GPT-3 175B, LoRA cuts training memory from 1.2 TB to 350 GB and the
    checkpoint from 350 GB to about 35 MB (r=4 on the query and value projections). Their accounting is
    16-bit throughout, Adam's moments included (no state for frozen weights: the '2/3 reduction'); here
    batch 1 × 2048 tokens with gradient checkpointing."""
    arch, gpu = resolve_arch("175B"), resolve_device("H100-80GB")
    setting = Setting(batch=1, seq_len=2048, precision="bf16")
    full = estimate(arch, "full", gpu, setting)
    lora = estimate(arch, "lora", gpu, setting, {"r": 4, "target_modules": ["q", "v"]})
    assert full.peak_ckpt == pytest.approx(1.2e12, rel=0.25)
    assert lora.peak_ckpt == pytest.approx(350 * GB, rel=0.10)
    assert full.artifact_bytes == pytest.approx(350 * GB, rel=0.01)
    assert lora.artifact_bytes == pytest.approx(35e6, rel=0.10)
    assert lora.trainable == 96 * 2 * 4 * (12288 + 12288)  # 18.9 M


# ---- the model's structure -------------------------------------------------------------------------------


def test_orderings_that_must_hold():
    arch, gpu = resolve_arch("7B"), resolve_device("A100-80GB")
    e = {m: estimate(arch, m, gpu) for m in estimable_methods()}
    assert e["qlora"].peak < e["lora"].peak < e["full"].peak
    assert e["zero-shot"].peak < e["lora"].peak
    assert e["partial"].trainable < e["full"].trainable
    assert e["full"].flops_per_token == pytest.approx(6 * arch.params, rel=0.1)  # Kaplan's 6N
    assert e["lora"].flops_per_token < e["full"].flops_per_token
    for name, est in e.items():
        if method_cost(name).declared.backprop_layers(
            arch, method_options(name, {})
        ):  # gradients flow into blocks
            assert est.memory["activations_ckpt"] < est.memory["activations"], name
            assert est.flops_per_token_ckpt > est.flops_per_token, name
        assert est.seconds > 0
    bigger = estimate(arch, "lora", gpu, Setting(batch=16))
    assert bigger.memory["activations"] == pytest.approx(2 * e["lora"].memory["activations"], rel=0.01)


def test_time_scales_with_tokens_and_device_peak():
    arch = resolve_arch("7B")
    a100 = estimate(arch, "lora", resolve_device("A100-80GB"), Setting(tokens=1e9))
    h100 = estimate(arch, "lora", resolve_device("H100-80GB"), Setting(tokens=1e9))
    assert a100.seconds == pytest.approx(1e9 * a100.flops_per_token / (312e12 * 0.4))
    assert h100.seconds == pytest.approx(a100.seconds * 312 / 989)
    custom = estimate(arch, "lora", resolve_device("custom:24GB:100TFLOPS"), Setting(tokens=1e9))
    assert custom.device_bytes == 24 * GIB
    assert custom.seconds == pytest.approx(1e9 * custom.flops_per_token / (100e12 * 0.4))


# ---- calibration against tunebench's measurements --------------------------------------------------------

#: Recorded with `python -m tunebench.estimate.calibrate [--methods lora,full --batch 32]` (BENCHMARKS.md,
#: "Estimator calibration"): SmolLM2-135M, 3 steps, fp32 on the 2-core CPU; the process baseline (peak RSS
#: training tiny-llama in the same process) and glibc's slack (`measure_slack`) measured by the same command.
#: (baseline MB, slack, batch, [(method, recorded options, train tokens, examples, target tokens, peak MB)])
RECORDED = [
    (504.0, 1.74, 8, [
        ("adapter", {"placement": "houlsby", "reduction": 16}, 350, 24, 134, 1320.2),
        ("dora", {"r": 16, "target_modules": ["all-linear"]}, 350, 24, 134, 2072.0),
        ("full", {}, 350, 24, 134, 3035.4),
        ("ia3", {"target_modules": None}, 350, 24, 134, 1328.0),
        ("lora", {"r": 16, "target_modules": ["all-linear"]}, 350, 24, 134, 1487.7),
        ("partial", {"blocks": 2, "output_head": True}, 350, 24, 134, 1901.8),
        ("prefix", {"virtual_tokens": 20}, 350, 24, 134, 1390.3),
        ("prompt", {"virtual_tokens": 20}, 350, 24, 134, 1715.1),
        ("qlora", {"r": 16, "target_modules": ["all-linear"]}, 350, 24, 134, 1016.6),
    ]),
    (496.0, 1.91, 32, [
        ("full", {}, 1399, 96, 535, 3363.5),
        ("lora", {"r": 16, "target_modules": ["all-linear"]}, 1399, 96, 535, 2542.9),
    ]),
    # session 12, Intel Xeon with AMX (fp32 forced by the calibration), the methods of session 7 that fit
    (477.0, 1.71, 8, [
        ("oft", {"block_size": 32, "target_modules": ["all-linear"]}, 350, 24, 134, 1373.8),
        ("boft", {"block_size": 4, "butterfly_factor": 1, "target_modules": ["all-linear"]}, 350, 24, 134, 3675.6),
        ("lokr", {"r": 8, "alpha": 8.0, "target_modules": ["all-linear"]}, 350, 24, 134, 2091.9),
    ]),
    # session 14, the same CPU, every run in a process of its own (BENCHMARKS.md "Each run in its own process")
    (398.0, 1.87, 8, [
        ("adalora", {"init_r": 12, "target_r": 8, "target_modules": ["all-linear"]}, 350, 24, 134, 1344.9),
        ("adapter", {"placement": "houlsby", "reduction": 16}, 350, 24, 134, 1172.1),
        ("boft", {"block_size": 4, "butterfly_factor": 1, "target_modules": ["all-linear"]}, 350, 24, 134, 3267.9),
        ("dora", {"r": 16, "target_modules": ["all-linear"]}, 350, 24, 134, 1610.1),
        ("full", {}, 350, 24, 134, 2872.0),
        ("ia3", {"target_modules": None}, 350, 24, 134, 1141.6),
        ("loha", {"r": 8, "alpha": 8.0, "target_modules": ["all-linear"]}, 350, 24, 134, 1898.2),
        ("lokr", {"r": 8, "alpha": 8.0, "target_modules": ["all-linear"]}, 350, 24, 134, 1698.0),
        ("lora", {"r": 16, "target_modules": ["all-linear"]}, 350, 24, 134, 1304.7),
        ("oft", {"block_size": 32, "target_modules": ["all-linear"]}, 350, 24, 134, 1236.4),
        ("partial", {"blocks": 2, "output_head": True}, 350, 24, 134, 1689.4),
        ("prefix", {"virtual_tokens": 20}, 350, 24, 134, 1216.6),
        ("prompt", {"virtual_tokens": 20}, 350, 24, 134, 1458.3),
        ("vera", {"r": 256, "target_modules": ["all-linear"]}, 350, 24, 134, 1233.1),
    ]),
]  # fmt: skip


def test_recorded_calibration_is_within_25_percent():
    from tunebench.estimate.devices import cpu_device
    from tunebench.estimate.from_result import estimate_run

    for baseline, slack, batch, runs in RECORDED:
        device = cpu_device(baseline, slack)
        for method, options, tokens, examples, targets, measured in runs:
            result = {
                "status": "ok", "model": "smollm2-135m", "method": method,
                "config": {"model_path": None, "method": {"name": method, **options},
                           "budget": {"batch_size": batch, "max_length": 256}},
                "train": {"tokens": tokens, "examples": examples, "target_tokens": targets, "bf16": False,
                          "peak_rss_mb": measured},
            }  # fmt: skip
            e = estimate_run(result, device)
            assert e.peak / 2**20 == pytest.approx(measured, rel=0.25), (method, batch)


#: Intent classification on SmolLM2-135M through a 77-way head (experiments/ladder_banking77.yaml, batch 32,
#: 13.6 tokens per example on average, widest batch 64): method, options, measured training peak (MB).
RECORDED_CLASSIFIER = [
    ("lora", {"r": 16, "target_modules": ["all-linear"]}, 6109), ("full", {}, 6184),
    ("adapter", {"placement": "houlsby", "reduction": 16}, 4377), ("prefix", {"virtual_tokens": 20}, 4014),
    ("partial", {"blocks": 2, "output_head": True}, 1706),
]  # fmt: skip


def test_classifier_runs_are_estimated_with_their_head_and_their_widest_batch():
    """The peak comes with the widest batch, not the mean one, and a classifier head is not the tied LM
    head (training it does not send gradients through every block). Estimating these runs from the mean
    length and the LM head gave 1.1-3.0 GB against 1.7-6.2 GB measured; now within 35% each."""
    from tunebench.estimate.devices import cpu_device
    from tunebench.estimate.from_result import estimate_run

    def result(method, options, measured, widest):
        return {
            "status": "ok", "model": "smollm2-135m", "method": method,
            "config": {"model_path": None, "method": {"name": method, "head": "classifier", **options},
                       "budget": {"batch_size": 32, "max_length": 64}},
            "task_info": {"labels": [f"intent {i}" for i in range(77)]},
            "train": {"tokens": 43381, "examples": 3200, "target_tokens": 3200, "bf16": False,
                      "max_width": widest, "peak_rss_mb": measured},
        }  # fmt: skip

    device = cpu_device()
    peaks = {}
    for method, options, measured in RECORDED_CLASSIFIER:
        peaks[method] = estimate_run(result(method, options, measured, 64), device).peak / 2**20
        assert peaks[method] == pytest.approx(measured, rel=0.35), method
        narrow = estimate_run(result(method, options, measured, None), device).peak / 2**20
        assert narrow < 0.6 * peaks[method] or method == "partial"  # the mean length (14) would hide it
    assert peaks["partial"] < 0.3 * peaks["full"]  # two blocks keep activations, not thirty


#: Methods left out of the live calibration test (their parameter counts are held to PEFT's above).
#: Measured in session 14 with each run in a process of its own (`python -m tunebench.estimate.calibrate
#: --model smollm2-135m`, Intel Xeon with AMX, fp32; BENCHMARKS.md "Each run in its own process"): galore
#: 1,683 MB estimated against 2,397 MB (-30%: galore-torch's projection temporaries are not modelled), qlora
#: 932 against 1,406 (-34%: bitsandbytes' dequantization buffers). AdaLoRA (-3%), OFT (+7%), BOFT (+3%)
#: and LoKr (-4%), out of this test in session 12 when they ran after other runs in one process (AdaLoRA
#: -34% there), are in it again, and so is prompt tuning (+15% since its logits, unmapped when freed, carry
#: no allocator slack; +24% before).
NOT_YET_CALIBRATED = {"galore", "qlora"}


@pytest.mark.slow
def test_estimate_against_measured_peak_on_smollm2(tmp_path):
    """A few training steps of each trained method on SmolLM2-135M; the estimate of each run's peak memory
    (process baseline and allocator slack measured in the same process) is within 25% of the measured peak."""
    from tunebench.estimate.calibrate import (
        baseline_mb,
        calibration_rows,
        measure,
        measure_slack,
        trained_methods,
    )

    methods = [m for m in trained_methods() if m not in NOT_YET_CALIBRATED]
    assert {"lora", "full"} <= set(methods)
    results = measure(tmp_path, "smollm2-135m", methods, steps=3)
    slack = measure_slack("smollm2-135m")["slack"]
    assert 1.0 <= slack < 3.0  # the live tensors, plus what glibc keeps of freed temporaries
    rows = calibration_rows(results, baseline_mb(results), slack)
    assert {r["method"] for r in rows} >= {"lora", "full"}
    for row in rows:
        assert abs(row["error"]) < 0.25, row


# ---- the report's hook -----------------------------------------------------------------------------------


def _result(method: str, options: dict, tmp_model: str | None = None) -> dict:
    return {
        "status": "ok", "model": "smollm2-135m", "method": method,
        "config": {"model_path": tmp_model, "method": {"name": method, **options},
                   "budget": {"batch_size": 8, "max_length": 64}},
        "train": {"tokens": 8 * 3 * 40, "examples": 24, "target_tokens": 24 * 4, "bf16": False,
                  "peak_rss_mb": 1500.0},
    }  # fmt: skip


def test_estimate_for_result_gives_the_target_cost():
    from tunebench.estimate.from_result import estimate_for_result

    lora = estimate_for_result(
        _result("lora", {"r": 16, "alpha": 32, "target_modules": ["all-linear"]}), "7B", "A100-80GB"
    )
    full = estimate_for_result(_result("full", {}), "7B", "A100-80GB")
    assert lora["available"] and full["available"]
    assert lora["target_model"] == "7B" and lora["target_device"] == "A100-80GB"
    assert lora["trainable"] == 32 * 16 * sum(
        m.d_in + m.d_out for m in resolve_arch("7B").linears()
    )  # r=16 carried over from the run
    assert lora["fits"] and not full["fits_ckpt"]  # full fine-tuning of 7B with Adam: > 100 GB
    assert lora["peak_gib"] < full["peak_gib"]
    assert json.dumps(lora)  # plain data for the report
    assert lora["hours"] > 0 and lora["tokens"] == 8 * 3 * 40
    zero = _result("zero-shot", {})
    zero["train"] = None
    prompting = estimate_for_result(zero, "7B", "A100-80GB")
    assert prompting["available"] and prompting["trainable"] == 0 and prompting["hours"] is None
    assert prompting["peak_gib"] < lora["peak_gib"]
    too_wide = estimate_for_result(_result("lora", {"r": 1024}), "smollm2-135m", "A100-80GB")
    assert too_wide["available"] is False and "hidden size 576" in too_wide["reason"]
    unknown = estimate_for_result(_result("distill", {}), "7B", "A100-80GB")
    assert unknown["available"] is False and "distill" in unknown["reason"]
    with pytest.raises(UnknownNameError, match="A100-80GB"):
        estimate_for_result(_result("lora", {}), "7B", "A100-80")
    with pytest.raises(UnknownNameError, match="'70B'"):
        estimate_for_result(_result("lora", {}), "70C", "A100-80GB")


# ---- bad input -------------------------------------------------------------------------------------------


def test_unknown_names_suggest_close_matches():
    with pytest.raises(UnknownNameError, match="Did you mean 'A100-80GB'"):
        resolve_device("A100-80G")
    with pytest.raises(UnknownNameError, match="'13B'"):
        resolve_arch("13C")
    with pytest.raises(UnknownNameError, match="Did you mean 'lora'"):
        estimate(resolve_arch("7B"), "lorra", resolve_device("A100-80GB"))
    with pytest.raises(SpecError, match=r"target_modules.*'q_prj'.*'q_proj'"):
        estimate(
            resolve_arch("7B"), "lora", resolve_device("A100-80GB"), options={"target_modules": ["q_prj"]}
        )


def test_impossible_settings_name_the_setting():
    arch, gpu = resolve_arch("smollm2-135m"), resolve_device("A100-80GB")
    with pytest.raises(SpecError, match="--batch"):
        estimate(arch, "lora", gpu, Setting(batch=0))
    with pytest.raises(SpecError, match=r"r: the rank 1024 is larger than the hidden size 576"):
        estimate(arch, "lora", gpu, options={"r": 1024})
    with pytest.raises(SpecError, match=r"blocks: smollm2-135m has 30 blocks"):
        estimate(arch, "partial", gpu, options={"blocks": 31})
    with pytest.raises(SpecError, match="--seq-len"):
        estimate(arch, "full", gpu, Setting(seq_len=0))
    with pytest.raises(SpecError, match=r"--precision.*Did you mean 'bf16'"):
        estimate(arch, "full", gpu, Setting(precision="bf61"))
    with pytest.raises(SpecError, match="unknown key 'rank'"):
        estimate(arch, "lora", gpu, options={"rank": 8})
    with pytest.raises(SpecError, match="memory '80'"):
        resolve_device("custom:80:312TFLOPS")


# ---- the command -----------------------------------------------------------------------------------------


def test_cli_estimate_table_and_json(capsys):
    from tunebench.cli.main import main

    code = main(["estimate", "--model", "7B", "--method", "lora,qlora,full", "--device", "A100-80GB",
                 "--tokens", "1B", "--opt", "r=8"])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "peak memory" in text and "qlora" in text and "A100-80GB" in text
    code = main(["estimate", "--model", "70B", "--method", "qlora", "--batch", "1", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    (e,) = data["estimates"]
    assert e["method"] == "qlora" and e["fits_ckpt"] is True and e["options"]["r"] == 16


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "A100-80G"], "Did you mean 'A100-80GB'"),
        (["--batch", "0"], "--batch"),
        (["--opt", "r=5000"], "larger than the hidden size"),
        (["--opt", "rank=8"], "--opt rank"),
        (["--tokens", "lots"], "--tokens"),
    ],
)
def test_cli_bad_input_is_one_clear_line(capsys, argv, message):
    from tunebench.cli.main import main

    assert main(["estimate", "--model", "7B", "--method", "lora", *argv]) == 2
    assert message in capsys.readouterr().err


def test_errors_are_tunebench_errors():
    assert issubclass(UnknownNameError, TunebenchError) and issubclass(SpecError, TunebenchError)


def test_every_registered_method_declares_its_cost():
    """One source per method: the estimator has no table of its own, so a method without a declared cost
    would be missing from `tunebench estimate`."""
    from tunebench.methods import METHODS

    missing = [name for name, cls in METHODS.items() if cls.cost is None]
    assert not missing, f"declare Method.cost (methods/cost.py) for: {missing}"
    assert estimable_methods() == list(METHODS)
    arch, gpu = resolve_arch("tiny-llama"), resolve_device("A100-80GB")
    for name in METHODS:  # each estimates on its own default options
        assert estimate(arch, name, gpu).peak > 0, name


def test_estimator_options_are_the_methods_own(capsys):
    from tunebench.cli.main import main

    # alpha is a LoRA option that does not change the cost: accepted, as in a spec
    assert (
        main(["estimate", "--model", "7B", "--method", "lora,qlora", "--opt", "r=8", "--opt", "alpha=16"])
        == 0
    )
    assert main(["estimate", "--model", "7B", "--method", "probe", "--classes", "77", "--json"]) == 0
    out = capsys.readouterr().out
    assert "315469" in out  # the probe's head: 4096 × 77 weights + 77 biases
    assert main(["estimate", "--model", "7B", "--method", "lora", "--opt", "rr=8"]) == 2
    assert "Did you mean 'r'?" in capsys.readouterr().err


def test_bitfit_trains_every_bias_and_the_estimator_counts_them(tmp_path):
    """BitFit on tiny-bert trains exactly its bias terms and the new head; the declared cost counts the
    same number from the architecture alone; a model without biases is refused before it loads."""
    import dataclasses
    import json as _json

    import torch

    from tunebench.core.errors import UnsupportedError
    from tunebench.methods import METHODS, Context
    from tunebench.methods.cost import bias_params
    from tunebench.models import resolve_model
    from tunebench.tasks import build_task
    from tunebench.train.budget import Budget

    data = tmp_path / "d.jsonl"
    data.write_text("".join(_json.dumps({"text": f"t {i}", "label": "ab"[i % 2]}) + "\n" for i in range(40)))
    task = build_task("file", {"path": str(data), "input": "text", "target": "label"})
    bert = resolve_model("tiny-bert")
    bitfit = METHODS.get("bitfit")()
    bitfit.check(task, bert)
    ctx = Context(bert, task, task.splits(), Budget(steps=1), seed=0, device=torch.device("cpu"), bf16=False)
    bitfit.prepare(ctx)
    trained = {n for n, p in bitfit.model.named_parameters() if p.requires_grad}
    assert trained and all(n.endswith(".bias") or ".classifier." in f".{n}" for n in trained)
    arch = dataclasses.replace(resolve_arch(bert.path), classes=2)
    assert bitfit.param_counts()[0] == bias_params(arch, None)
    with pytest.raises(UnsupportedError, match="bitfit trains bias terms, and tiny-llama's blocks have none"):
        METHODS.get("bitfit")().check(task, resolve_model("tiny-llama"))
