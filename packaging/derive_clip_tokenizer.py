"""Derive the Hugging Face CLIPTokenizer files (vocab.json, merges.txt) from OpenAI's CLIP BPE file.

The bundled single-file configs (resources/configs/<family>/tokenizer*/) need the CLIP tokenizer, and nothing
may be fetched at run time. OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` (MIT, shipped in the PyPI package
``open_clip_torch`` as ``open_clip/bpe_simple_vocab_16e6.txt.gz``) holds the merges; the vocabulary is built from
them exactly as OpenAI's ``SimpleTokenizer`` does: the 256 byte characters, the same with ``</w>``, one token per
merge (the first 48894 merges), then ``<|startoftext|>`` and ``<|endoftext|>`` (ids 49406, 49407).

    python packaging/derive_clip_tokenizer.py path/to/bpe_simple_vocab_16e6.txt.gz

writes vocab.json and merges.txt into every resources/configs/*/tokenizer*/ folder (identical files: git stores
the blob once). Without a path it looks for the file in an installed ``open_clip`` package.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "resources" / "configs"
MERGE_COUNT = 49152 - 256 - 2  # SimpleTokenizer: merges[1:49152-256-2+1]
SPECIAL = ["<|startoftext|>", "<|endoftext|>"]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 bytes to printable characters."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def derive(bpe_gz: Path) -> tuple[dict[str, int], list[str]]:
    """(vocab, merge lines) exactly as OpenAI's SimpleTokenizer builds them."""
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:MERGE_COUNT + 1]]
    if len(merges) != MERGE_COUNT or any(len(m) != 2 for m in merges):
        raise SystemExit(f"{bpe_gz} is not the CLIP BPE file (expected {MERGE_COUNT} merge pairs)")
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += SPECIAL
    return {token: i for i, token in enumerate(vocab)}, [" ".join(m) for m in merges]


def find_bpe() -> Path:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("Pass the path to bpe_simple_vocab_16e6.txt.gz (from the open_clip_torch wheel).")
    return Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bpe", nargs="?", type=Path, help="bpe_simple_vocab_16e6.txt.gz")
    args = parser.parse_args(argv)
    vocab, merges = derive(args.bpe or find_bpe())
    vocab_text = json.dumps(vocab, ensure_ascii=False) + "\n"
    merges_text = "#version: 0.2\n" + "\n".join(merges) + "\n"
    folders = sorted(p for p in CONFIGS.glob("*/tokenizer*") if p.is_dir())
    for folder in folders:
        (folder / "vocab.json").write_text(vocab_text, encoding="utf-8")
        (folder / "merges.txt").write_text(merges_text, encoding="utf-8")
        print(f"wrote {folder.relative_to(ROOT)}/vocab.json ({len(vocab)} tokens), merges.txt ({len(merges)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
