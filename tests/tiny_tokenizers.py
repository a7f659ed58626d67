"""Tiny tokenizers built in code, offline (the Hugging Face hub is never asked): CLIP (byte-level BPE), T5
(Unigram), Gemma (BPE with byte fallback) and Qwen2 (byte-level BPE with the chat tokens). Each knows a few
whole words ("a", "cat", "red") and otherwise spells the prompt letter by letter, which is enough for tiny
random text encoders: what matters is that the pipelines' calls (padding, truncation, special tokens, chat
templates) behave as with the published tokenizers.
"""

from __future__ import annotations

from tiny_models import _byte_chars

WORDS = ("a", "cat", "red")
PRINTABLE = [chr(c) for c in range(ord("!"), ord("~") + 1)]


def clip_tokenizer(max_length: int = 77):
    """A CLIPTokenizer like tiny_models.tiny_clip_tokenizer, with CLIP's real 77-token window by default."""
    from transformers import CLIPTokenizer

    chars = _byte_chars()
    merges = [("c", "a"), ("ca", "t</w>"), ("r", "e"), ("re", "d</w>")]
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    tokens += ["ca", "cat</w>", "re", "red</w>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, model_max_length=max_length)


def t5_tokenizer(max_length: int = 512):
    """A T5 tokenizer (Unigram, as T5's sentencepiece model is): <pad>=0, </s>=1, <unk>=2, then the pieces."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -5.0) for c in PRINTABLE]
    pieces += [("▁" + w, -1.0) for w in WORDS]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


def gemma_tokenizer(max_length: int = 8192):
    """A Gemma tokenizer (BPE over "▁"-joined text, byte fallback, <bos> first): <pad> <eos> <bos> <unk>."""
    from transformers import GemmaTokenizer

    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    tokens += ["▁", *PRINTABLE, "ca", "cat", "re", "red", "▁a", "▁c", "▁ca", "▁cat", "▁r", "▁re", "▁red"]
    merges = [("c", "a"), ("ca", "t"), ("r", "e"), ("re", "d"), ("▁", "a"), ("▁", "c"), ("▁c", "a"),
              ("▁ca", "t"), ("▁", "r"), ("▁r", "e"), ("▁re", "d")]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return GemmaTokenizer(vocab=vocab, merges=merges, model_max_length=max_length, add_bos_token=True)


QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>", "<think>", "</think>"]

# Qwen3's template, as far as the image pipelines use it (a user turn, the assistant's turn opened, an empty
# thought when enable_thinking is False).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)


# The words of Qwen-Image's system prompt: spelled as whole tokens, the prompt's preamble is about as long as
# with the published tokenizer, whose 34 first tokens the pipeline drops.
QWEN_WORDS = ("a cat red system user assistant Describe the image by detailing color shape size texture quantity"
              " text spatial relationships of objects and background").split()


def _chains(words, bare, prefix: str = "Ġ"):
    """Byte-level BPE tokens and merges spelling each word after a space (and the ``bare`` words alone too)
    left to right. The merges after a space rank first, so no merge inside a word breaks its chain."""
    tokens, merges = [], []
    for start in [prefix + w for w in words] + list(bare):
        piece = start[0]
        for char in start[1:]:
            merges.append((piece, char))
            piece += char
            tokens.append(piece)
    return list(dict.fromkeys(tokens)), list(dict.fromkeys(merges))


def qwen_tokenizer(max_length: int = 1024):
    """A Qwen2 tokenizer (byte-level BPE) with Qwen's chat and vision tokens and a Qwen3-style chat template."""
    from transformers import Qwen2Tokenizer

    words, merges = _chains(QWEN_WORDS, bare=("system", "user", "assistant", "Describe", "a", "cat", "red"))
    vocab = {t: i for i, t in enumerate(dict.fromkeys(_byte_chars() + words))}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, bos_token=None,
                               eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=max_length)
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL})
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer
