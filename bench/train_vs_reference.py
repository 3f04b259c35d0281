"""tunebench's training against the plain way: a hand-written transformers Trainer + PEFT script.

    python bench/train_vs_reference.py [--steps 40] [--methods lora,full] [--reference dynamic|pad64]
                                       [--quick] [--no-metric] [--random-init FOLDER] [--peak]
                                       [--tunebench-only] [--same-draw]

The reference is what a user writes from the Hugging Face docs: the model loaded in fp32, PEFT LoRA with its
defaults plus the rank and targets below (or no PEFT for `full`), every example tokenized as
`prompt + " " + answer + EOS`, labels equal to the input ids with the prompt (and any padding) set to -100
(loss on the answer tokens only, as tunebench trains), `Trainer` with the same learning rate, warm-up,
cosine schedule, steps and batch as tunebench. Trainer's other defaults are kept (fused AdamW, gradient
clipping at 1.0, fp32; bf16=True on CUDA, which is where a user turns it on). Two references:

- `--reference dynamic` (the default; the plain way done well): no padding at tokenization,
  `DataCollatorForSeq2Seq` pads each batch to its longest example (labels with -100), and Trainer's
  length-grouped sampler (`train_sampling_strategy="group_by_length"`, transformers 4's `group_by_length`)
  draws batches of similar length. What is left between it and tunebench is the
  training loop itself: logits at every position against the target positions only, Trainer's per-step
  overhead.
- `--reference pad64`: every example padded to --max-length (64 by default: the round number a user picks for
  problems like "123 + 456 =") with `default_data_collator`. The weak baseline, kept for comparison.

tunebench runs the same method through its Python API (the method's prepare → fit → predict, as the runner
does) on the same model, data, steps, batch and learning rate. Each pair runs back to back in one process, so
the ratio is measured under the same load. Throughput counts non-padding tokens (prompt + answer) over the
wall time of training (tokenization and optimizer creation included on both sides; model loading excluded).
Both trained models are scored by the same code: tunebench's batched greedy generation on the test split
and the task's exact-match scorer.

--same-draw: the quality check. By default the two sides draw differently, as two users' scripts would:
Trainer's own shuffling, LoRA's initialisation from Trainer's seed, Trainer's warm-up from lr 0. At 40 steps
those draws move exact match by several points, so a single pair cannot say whether the two reach the same
quality. With --same-draw the reference is given tunebench's draw and nothing else changes: the training
examples in tunebench's order (Trainer's sampler made sequential), the LoRA weights tunebench initialised
(copied in before training), and tunebench's warm-up (linear from 1/(w+1), then the same cosine). What is
left between the two is the arithmetic: padding and logits at every position change the shapes and the
order of the float sums, not the function being optimised. The throughput ratio holds either way (the draw
costs nothing), so the run prints both.

--random-init FOLDER: a folder with a model's config.json and tokenizer files but no weights (gpu_kit/
smollm2-shape/); the model is built at random from the config (seed 0) and saved to a temporary folder
that both sides load. For throughput only (use with --no-metric). --peak also measures the GEMM peaks and
prints MFU against the peak of the precision the run used (fp32 or bf16; see hardware_limit.py for how FLOPs
are counted).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TUNEBENCH_NO_PROGRESS", "1")
sys.path.insert(0, str(Path(__file__).parent))  # hardware_limit, when run from anywhere

import torch
from hardware_limit import gemm_peak, model_shape, training_flops

LORA = {"r": 16, "alpha": 32.0}
LEARNING_RATES = {"lora": 2e-3, "full": 1e-4}  # the default experiment's


@dataclass
class Side:
    name: str
    seconds: float = 0.0
    tokens: int = 0
    """Non-padding tokens trained on."""
    target_tokens: int = 0
    computed_tokens: int = 0
    """Tokens the model actually ran over, padding included."""
    metric: float | None = None
    flops: float = 0.0
    losses: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


# -- the reference: what a user writes by hand ---------------------------------------------------------


class CountingCollator:
    """The reference's collator (`DataCollatorForSeq2Seq` for --reference dynamic, `default_data_collator`
    for pad64) remembering each batch's non-padding, target and computed tokens (for the figures only;
    accelerate's loader may fetch one batch ahead, so the caller keeps the first `steps` batches)."""

    def __init__(self, tokenizer, dynamic: bool) -> None:
        from transformers import DataCollatorForSeq2Seq, default_data_collator

        self.collate = (
            DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
            if dynamic
            else default_data_collator
        )
        self.batches: list[tuple[int, int, int]] = []

    def __call__(self, features):
        batch = self.collate(features)
        mask = batch["attention_mask"]
        targets = int((batch["labels"] != -100).sum())
        self.batches.append((int(mask.sum()), targets, mask.numel()))
        return batch


def reference_dataset(
    tokenizer, prompts: list[str], answers: list[str], max_length: int, dynamic: bool
) -> list[dict]:
    """Tokenized rows: unpadded lists for the dynamic reference (its collator pads), tensors padded to
    max_length for pad64."""
    rows = []
    for prompt, answer in zip(prompts, answers, strict=True):
        enc = tokenizer(
            prompt + " " + answer + tokenizer.eos_token,
            padding=False if dynamic else "max_length",
            max_length=max_length,
            truncation=True,
        )
        n_prompt = len(tokenizer(prompt)["input_ids"])
        labels = [
            tok if m and i >= n_prompt else -100
            for i, (tok, m) in enumerate(zip(enc["input_ids"], enc["attention_mask"], strict=True))
        ]
        if dynamic:
            rows.append({**dict(enc), "labels": labels})
        else:
            rows.append({**{k: torch.tensor(v) for k, v in enc.items()}, "labels": torch.tensor(labels)})
    return rows


@dataclass
class Draw:
    """tunebench's draw, handed to the reference with --same-draw."""

    order: list[int]
    """Indices of the training examples in the order tunebench's batch stream takes them."""
    init: dict[str, torch.Tensor]
    """The trainable weights as tunebench initialised them (LoRA's A and B), by parameter name."""
    schedule: object
    """step → learning-rate factor, tunebench's warm-up and cosine."""


def tunebench_draw(method: str, model_path: str, task, splits, args) -> Draw:
    """tunebench's example order, adapter initialisation and schedule for this run (nothing is trained)."""
    import math

    from tunebench.train.data import epoch_order

    prepared, ctx = tunebench_method(method, model_path, task, splits, args)
    examples, _ = prepared.head.encode(prepared, ctx)
    n, steps, batch = len(examples), args.steps, args.batch_size
    per_epoch = n // batch
    order: list[int] = []
    for epoch in range(math.ceil(steps / per_epoch)):  # as train.data.batch_stream draws them
        drawn = epoch_order(examples, batch, args.seed, epoch, ctx.budget.group_by_length)
        order += drawn[: per_epoch * batch]
    init = {}
    if method == "lora":
        init = {k: v.detach().clone() for k, v in prepared.model.named_parameters() if v.requires_grad}
    del prepared
    warmup = int(0.1 * steps)

    def schedule(step: int) -> float:  # train.loop's
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return Draw(order[: steps * batch], init, schedule)


def reference_train(
    method: str, model_path: str, task, splits, args, bf16: bool, draw: Draw | None = None
) -> tuple[Side, object, object]:
    from peft import LoraConfig, get_peft_model
    from torch.utils.data import SequentialSampler
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    class SameDrawTrainer(Trainer):
        """Trainer taking the examples in the given order and tunebench's warm-up (--same-draw only)."""

        def _get_train_sampler(self, *_args, **_kwargs):
            return SequentialSampler(self.train_dataset)

        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None:
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                    optimizer or self.optimizer, draw.schedule
                )
            return self.lr_scheduler

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    if method == "lora":
        config = LoraConfig(
            r=LORA["r"], lora_alpha=LORA["alpha"], target_modules="all-linear", task_type="CAUSAL_LM"
        )
        model = get_peft_model(model, config)
    if draw is not None and draw.init:
        names = dict(model.named_parameters())
        missing = sorted(set(draw.init) - set(names))
        if missing:
            raise SystemExit(f"--same-draw: the reference has no parameter {missing[0]} (PEFT names differ)")
        with torch.no_grad():
            for name, value in draw.init.items():
                names[name].copy_(value)
    side = Side("reference")
    dynamic = args.reference == "dynamic"
    collator = CountingCollator(tokenizer, dynamic)
    with tempfile.TemporaryDirectory(prefix="tunebench-reference-") as out:
        training_args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            max_steps=args.steps,
            learning_rate=LEARNING_RATES[method],
            warmup_steps=int(0.1 * args.steps),
            lr_scheduler_type="cosine",
            # transformers 5's name for 4's group_by_length=True; with --same-draw the order is tunebench's
            train_sampling_strategy="group_by_length" if dynamic and draw is None else "random",
            bf16=bf16,
            seed=args.seed,
            logging_steps=1 if draw is not None else max(1, args.steps // 4),  # per-step losses to compare
            disable_tqdm=True,
        )
        start = time.perf_counter()
        train = splits.train if draw is None else [splits.train[i] for i in draw.order]
        dataset = reference_dataset(
            tokenizer,
            [task.prompt(e.input) for e in train],
            [e.target for e in train],
            args.max_length,
            dynamic,
        )
        trainer = (Trainer if draw is None else SameDrawTrainer)(
            model=model, args=training_args, train_dataset=dataset, data_collator=collator
        )
        trainer.train()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        side.seconds = time.perf_counter() - start
    used = collator.batches[: args.steps]
    side.tokens = sum(b[0] for b in used)
    side.target_tokens = sum(b[1] for b in used)
    side.computed_tokens = sum(b[2] for b in used)
    side.losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return side, model.eval(), tokenizer


def reference_metric(model, tokenizer, task, splits, device: torch.device, bf16: bool) -> float:
    """The reference's model scored exactly as tunebench scores its own (same generation, same scorer)."""
    from tunebench.evaluate.generate import generate

    predictions = generate(
        model,
        tokenizer,
        [task.prompt(e.input) for e in splits.test],
        max_new_tokens=task.max_new_tokens,
        batch_size=100,
        device=device,
        bf16=bf16,
    )
    return task.score(predictions, [e.target for e in splits.test]).metrics["exact_match"]


# -- tunebench, through its Python API ----------------------------------------------------------------


def tunebench_method(method_name: str, model_path: str, task, splits, args) -> tuple[object, object]:
    """(the method, prepared on the model; its context)."""
    from tunebench.core.typed import build
    from tunebench.methods import METHODS
    from tunebench.methods.base import Context
    from tunebench.models import resolve_model
    from tunebench.train.budget import Budget
    from tunebench.train.device import pick_device, use_bf16

    cls = METHODS.get(method_name)
    options = build(cls.Options, LORA if method_name == "lora" else {}, method_name)
    budget = Budget(
        steps=args.steps,
        batch_size=args.batch_size,
        max_length=args.max_length,
        lr=LEARNING_RATES[method_name],
        warmup=0.1,
        precision=args.precision,
        eval_batch_size=100,
        group_by_length=args.group_by_length == "on",
    )
    device = pick_device()
    ctx = Context(
        model=resolve_model(model_path),
        task=task,
        splits=splits,
        budget=budget,
        seed=args.seed,
        device=device,
        bf16=use_bf16(budget.precision, device),
    )
    method = cls(options)
    method.prepare(ctx)
    return method, ctx


def tunebench_run(method_name: str, model_path: str, task, splits, args, metric: bool) -> tuple[Side, object]:
    method, ctx = tunebench_method(method_name, model_path, task, splits, args)
    device = ctx.device
    start = time.perf_counter()
    stats = method.fit(ctx)
    if device.type == "cuda":
        torch.cuda.synchronize()
    side = Side("tunebench", seconds=time.perf_counter() - start)
    side.tokens, side.target_tokens = stats.tokens, stats.target_tokens
    side.computed_tokens = stats.padded_tokens  # with the padding to each batch's longest example
    side.losses = stats.losses
    if metric:
        predictions = method.predict(ctx, [e.input for e in splits.test])
        side.metric = task.score(predictions, [e.target for e in splits.test]).metrics["exact_match"]
    return side, method.model


# -- the comparison ------------------------------------------------------------------------------------


def random_init_folder(kit: Path) -> Path:
    """A loadable model folder: the kit's config and tokenizer, weights drawn at random (seed 0)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if not (kit / "config.json").exists():
        raise SystemExit(
            f"--random-init {kit}: no config.json there (expected a model folder without weights)"
        )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(kit), dtype=torch.float32)
    folder = Path(tempfile.mkdtemp(prefix="tunebench-random-"))
    for f in kit.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors"):
            shutil.copy(f, folder / f.name)
    model.save_pretrained(folder)
    return folder


def compare(method: str, model_path: str, task, splits, args, peak: float | None) -> dict:
    from tunebench.train.device import pick_device, use_bf16
    from tunebench.train.memory import release_memory

    device = pick_device()
    bf16 = use_bf16(args.precision, device)
    sides = []
    if not args.tunebench_only:
        draw = tunebench_draw(method, model_path, task, splits, args) if args.same_draw else None
        ref, ref_model, ref_tok = reference_train(method, model_path, task, splits, args, bf16, draw)
        del draw
        release_memory()
        if args.metric:
            ref.metric = reference_metric(ref_model, ref_tok, task, splits, device, bf16)
        sides.append(ref)
        del ref_model
        release_memory()
    ours, our_model = tunebench_run(method, model_path, task, splits, args, args.metric)
    sides.append(ours)
    shape = model_shape(our_model)
    adapters = None
    if method == "lora":  # the same PEFT config on both sides, so the same adapter weights
        adapters = sum(p.numel() for n, p in our_model.named_parameters() if "lora_" in n)
    del our_model
    release_memory()
    for side in sides:
        side.flops = training_flops(shape, side.tokens, side.target_tokens, adapters)
    row = {
        "method": method,
        "device": str(device),
        "bf16": bf16,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "ratio": None if args.tunebench_only else ours.tokens_per_s / ref.tokens_per_s,
        "same_draw": args.same_draw,
    }
    for side in sides:
        rate = side.flops / side.seconds
        row[side.name] = {
            "seconds": round(side.seconds, 2),
            "tokens": side.tokens,
            "target_tokens": side.target_tokens,
            "computed_tokens": side.computed_tokens,
            "tokens_per_s": round(side.tokens_per_s, 1),
            "model_tflop_per_s": rate / 1e12,
            "mfu": rate / peak if peak else None,
            "metric": side.metric,
            "first_loss": side.losses[0] if side.losses else None,
            "last_loss": side.losses[-1] if side.losses else None,
            "losses": side.losses,
        }
    return row


def print_row(row: dict, peak_name: str) -> None:
    print(
        f"\n== {row['method']} on {row['device']} (bf16 {row['bf16']}), {row['steps']} steps x {row['batch_size']}"
        + (", same draw on both sides" if row.get("same_draw") else "")
    )
    for name in ("reference", "tunebench"):
        if name not in row:
            continue
        s = row[name]
        metric = "" if s["metric"] is None else f"  exact match {s['metric']:.1%}"
        mfu = "" if s["mfu"] is None else f"  MFU {s['mfu']:.1%} of {peak_name}"
        print(
            f"  {name:<10} {s['seconds']:8.1f} s  {s['tokens_per_s']:8.1f} tokens/s (non-padding; {s['tokens']} "
            f"of {s['computed_tokens']} computed)  "
            f"{s['model_tflop_per_s'] * 1e3:.1f} useful GFLOP/s"
            f"{mfu}{metric}  loss {s['first_loss']:.3f} -> {s['last_loss']:.3f}"
        )
    if row["ratio"] is None:
        return
    print(f"  tunebench / reference throughput: {row['ratio']:.2f}x")
    ours, theirs = row["tunebench"]["losses"], row["reference"]["losses"]
    if row.get("same_draw") and len(ours) == len(theirs):
        gaps = [abs(a - b) for a, b in zip(ours, theirs, strict=True)]
        print(
            f"  per-step training loss, largest gap between the sides: {max(gaps):.4f} (step {gaps.index(max(gaps)) + 1})"
        )
    if row["reference"]["metric"] is not None and row["tunebench"]["metric"] is not None:
        gap = 100 * (row["tunebench"]["metric"] - row["reference"]["metric"])
        print(f"  metric difference (tunebench - reference): {gap:+.1f} points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="optimizer steps (default 40; 10 with --quick)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--max-length",
        type=int,
        default=64,
        help="longest example; --reference pad64 pads every example to it",
    )
    parser.add_argument("--methods", default="lora,full")
    parser.add_argument("--model", default="smollm2-135m", help="registered name or model folder")
    parser.add_argument("--random-init", type=Path, help="config + tokenizer folder; random weights")
    parser.add_argument("--precision", default="auto", help="tunebench's precision; the reference follows it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--test-size", type=int, default=200)
    parser.add_argument("--no-metric", dest="metric", action="store_false", help="throughput only")
    parser.add_argument("--quick", action="store_true", help="10 steps, no metric: a smoke test")
    parser.add_argument("--peak", action="store_true", help="measure the GEMM peak and print MFU")
    parser.add_argument(
        "--group-by-length",
        choices=("on", "off"),
        default="on",
        help="tunebench's budget.group_by_length (on by default, as in a run)",
    )
    parser.add_argument(
        "--reference",
        choices=("dynamic", "pad64"),
        default="dynamic",
        help="dynamic: DataCollatorForSeq2Seq + group_by_length (default); pad64: pad every example to --max-length",
    )
    parser.add_argument(
        "--tunebench-only", action="store_true", help="skip the reference (to measure a lever on its own)"
    )
    parser.add_argument(
        "--same-draw",
        action="store_true",
        help="give the reference tunebench's example order, adapter initialisation and warm-up (quality check)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.metric = False
    args.steps = args.steps or (10 if args.quick else 40)

    from tunebench.cli.main import quiet_libraries
    from tunebench.models import resolve_model
    from tunebench.tasks import build_task
    from tunebench.train.device import pick_device

    quiet_libraries()
    if args.random_init:
        model_path = str(random_init_folder(args.random_init))
    else:
        model_path = resolve_model(args.model).path
    task = build_task(
        "arithmetic", {"op": "add", "digits": 3, "train_size": args.train_size, "test_size": args.test_size}
    )
    splits = task.splits()
    device = pick_device()
    name = (
        torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"{name}; torch {torch.__version__}; model {model_path}")
    peak, peak_name = None, ""
    if args.peak:
        bf16_peak = gemm_peak(torch.bfloat16, device)
        fp32_peak = gemm_peak(torch.float32, device)
        tf32 = ""
        if device.type == "cuda":
            tf32 = f", tf32 {gemm_peak(torch.float32, device, tf32=True) / 1e12:.3f} TFLOP/s"
        print(f"GEMM peak: bf16 {bf16_peak / 1e12:.3f} TFLOP/s, fp32 {fp32_peak / 1e12:.3f} TFLOP/s{tf32}")
        # MFU is against the peak of the precision the run computes in (fp32 on a CPU without AMX, bf16 on
        # CUDA); both are kept in the JSON.
        from tunebench.train.device import use_bf16

        bf16 = use_bf16(args.precision, device)
        peak, peak_name = (bf16_peak, "the bf16 peak") if bf16 else (fp32_peak, "the fp32 peak")
    rows = []
    for method in args.methods.split(","):
        row = compare(method, model_path, task, splits, args, peak)
        if args.peak:
            for side in ("reference", "tunebench")[args.tunebench_only :]:
                row[side]["mfu_fp32_peak"] = row[side]["model_tflop_per_s"] * 1e12 / fp32_peak
                row[side]["mfu_bf16_peak"] = row[side]["model_tflop_per_s"] * 1e12 / bf16_peak
        print_row(row, peak_name)
        rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.random_init:
        shutil.rmtree(model_path, ignore_errors=True)


if __name__ == "__main__":
    main()
