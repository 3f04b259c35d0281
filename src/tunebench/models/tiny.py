"""Tiny random-init models for tests: built from a config with a locally trained tokenizer, no network.

They learn nothing useful, but they exercise every code path (training, generation, export, loading)
in seconds. Initialisation is seeded, so the same tiny model is built on every machine.
"""

from __future__ import annotations

import string
from pathlib import Path

from tunebench.models.zoo import MODELS, ModelEntry

_CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


def _corpus() -> list[str]:
    words = [
        "the",
        "a",
        "of",
        "to",
        "and",
        "is",
        "what",
        "compute",
        "result",
        "reply",
        "with",
        "number",
        "only",
        "answer",
        "label",
        "text",
        "classify",
    ]
    digits = [f"{a} + {b} = {a + b}" for a in range(0, 100, 7) for b in range(0, 100, 11)]
    return [string.ascii_letters + string.digits + string.punctuation, " ".join(words), *digits]


def build_tokenizer(specials: list[str], bert_style: bool):
    """A byte-level BPE tokenizer trained in milliseconds on a fixed corpus, so it is the same everywhere."""
    from tokenizers import (  # lazy: slow import
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast  # lazy: slow import

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    if bert_style:
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B [SEP]",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            cls_token="[CLS]",
            sep_token="[SEP]",
            pad_token="[PAD]",
            unk_token="[UNK]",
            mask_token="[MASK]",
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        chat_template=_CHAT_TEMPLATE,
    )


def _build_tiny_llama(out: Path) -> None:
    import torch  # lazy: slow import
    from transformers import (  # lazy: slow import
        LlamaConfig,
        LlamaForCausalLM,
    )

    tokenizer = build_tokenizer(["<pad>", "<s>", "</s>", "<unk>"], bert_style=False)
    # 64 wide: bitsandbytes' 4-bit CPU kernels need rows of at least one 64-value quantization block.
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)


def _build_tiny_bert(out: Path) -> None:
    import torch  # lazy: slow import
    from transformers import BertConfig, BertModel  # lazy: slow import

    tokenizer = build_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], bert_style=True)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        # Wider initial weights: at BERT's 0.02 a random 2-layer trunk gives [CLS] states that barely depend
        # on the input, and nothing on top of them can learn.
        initializer_range=0.3,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)


MODELS.add(
    "tiny-llama",
    ModelEntry(
        kind="decoder",
        params="0.1M",
        source="built locally (random init, Llama config, local BPE tokenizer)",
        build=_build_tiny_llama,
        summary="2-layer, 64-wide random Llama for tests",
        version=2,
    ),
)
MODELS.add(
    "tiny-bert",
    ModelEntry(
        kind="encoder",
        params="0.1M",
        source="built locally (random init, BERT config, local BPE tokenizer)",
        build=_build_tiny_bert,
        summary="2-layer, 64-wide random BERT encoder for tests",
        version=3,
    ),
)
