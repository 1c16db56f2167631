"""Word-level (or char-level) tokenizer with a frequency-ordered vocabulary.

Levels:
    word        words, numbers and single punctuation marks are tokens; English clitics ('s n't 're ...)
                are their own tokens so that decode can glue them back ("cat's" -> cat 's -> "cat's").
                Unicode-aware: accents, CJK and emoji survive (\\w is unicode; other symbols are one
                token per code point).
    whitespace  the text is already tokenized (e.g. WikiText): split on whitespace, nothing more.
    char        every character is a token (spaces included).

Every line (or row) ends with ``<eos>``; words outside the vocabulary map to ``<unk>``. Ids are ordered
by frequency (specials first), which the adaptive softmax relies on: its cut-offs split by rank.

Normalization: ``decode(encode(text))`` gives the same tokens back as ``text`` (lowercased if asked);
only the spacing between tokens is rewritten (one space, none before closing punctuation, none after
opening brackets).
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import chain
from typing import Iterable, Iterator, List, Optional, Sequence

import numpy as np

__all__ = ["Tokenizer", "UNK", "EOS", "SPECIALS"]

_chain = chain.from_iterable
UNK, EOS = "<unk>", "<eos>"
SPECIALS = (UNK, EOS)

# Punctuation marks are tokens of their own; every other run of non-space characters is a word, so
# letters with combining marks, scripts whose vowel signs are not \w, digits and emoji stay whole.
_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~“”‘’«»…—–¡¿、。，！？：；（）【】《》「」·•"
_P = re.escape(_PUNCT)
_CLITICS = ("s", "t", "re", "ve", "ll", "m", "d")
# A literal "<unk>" in text (WikiText writes rare words so) is the unknown token, not three tokens.
_WORD_RE = re.compile(rf"<unk>|(?i:['’](?:{'|'.join(_CLITICS)})(?![^\s{_P}]))|[^\s{_P}]+|[{_P}]")
# Decoding: no space before closing marks and clitics, none after openers; "-", "/" and "_" glue both ways.
_CLITIC_TOKENS = {q + c for q in "'’" for c in _CLITICS}
_CLITIC_TOKENS |= {t.upper() for t in _CLITIC_TOKENS} | {t[0] + t[1:].upper() for t in _CLITIC_TOKENS}
_GLUE = frozenset("-/_")
# What str.splitlines() splits on: encode() ends a line (<eos>) at each, so char level never keeps one.
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_NO_SPACE_BEFORE = frozenset(",.!?;:%)]}…»”’、。，！？：；）】》」") | _CLITIC_TOKENS | _GLUE
_NO_SPACE_AFTER = frozenset("([{«“$#@¡¿（【《「") | _GLUE


class Tokenizer:
    """Turns text into token ids and back.

    >>> tok = Tokenizer().fit(["The cat sat.", "The dog's bowl!"])
    >>> tok.decode(tok.encode("the cat's bowl."))
    "<unk> cat's bowl."
    """

    def __init__(self, level: str = "word", lowercase: bool = False, min_freq: int = 1,
                 max_vocab: int = 50_000, itos: Optional[Sequence[str]] = None):
        if level not in ("word", "whitespace", "char"):
            raise ValueError(f"unknown tokenizer level {level!r}")
        self.level, self.lowercase = level, lowercase
        self.min_freq, self.max_vocab = min_freq, max_vocab
        self.itos: List[str] = list(itos) if itos is not None else list(SPECIALS)
        self._reindex()

    # -------------------------------------------------------------------------------- vocabulary

    def _reindex(self) -> None:
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.unk_id, self.eos_id = self.stoi[UNK], self.stoi[EOS]
        # Whitespace chunk -> tuple of token ids ("cat's," -> (cat, 's, ,)). Chunks follow Zipf's law, so
        # after the first megabyte almost every chunk is a dict hit, and map + chain.from_iterable keep
        # the whole line in C: encoding runs at dict speed instead of regex speed.
        self._memo: dict = {}

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def fitted(self) -> bool:
        return len(self.itos) > len(SPECIALS)

    def count(self, lines: Iterable[str], counter: Optional[Counter] = None) -> Counter:
        """Count tokens over lines (streaming; call again to add more). Returns the counter."""
        counter = Counter() if counter is None else counter
        chunk_counts: Counter = Counter()
        for line in lines:
            if self.level == "char":
                counter.update(self._prep(line))
            else:
                chunk_counts.update(self._prep(line).split())
        # Split each distinct chunk once, then weight by how often the chunk occurred.
        for chunk, n in chunk_counts.items():
            for tok in self._split_chunk(chunk):
                counter[tok] += n
        return counter

    def build(self, counter: Counter) -> "Tokenizer":
        """Fix the vocabulary from counts: specials, then words by falling frequency (ties: alphabetical)."""
        words = [(w, c) for w, c in counter.items() if c >= self.min_freq and w not in SPECIALS]
        words.sort(key=lambda wc: (-wc[1], wc[0]))
        self.itos = list(SPECIALS) + [w for w, _ in words[: max(0, self.max_vocab - len(SPECIALS))]]
        self._reindex()
        return self

    def fit(self, lines: Iterable[str]) -> "Tokenizer":
        if isinstance(lines, str):
            lines = lines.splitlines()
        return self.build(self.count(lines))

    # ------------------------------------------------------------------------------------ encode

    def _prep(self, line: str) -> str:
        return line.lower() if self.lowercase else line

    def _split_chunk(self, chunk: str) -> List[str]:
        if self.level == "whitespace":
            return [chunk]
        return _WORD_RE.findall(chunk)

    def tokenize(self, text: str) -> List[str]:
        """Text -> token strings (no <eos>, vocabulary not applied)."""
        text = self._prep(text)
        if self.level == "char":
            return [c for c in text if c not in _LINE_BREAKS]
        if self.level == "whitespace":
            return text.split()
        return _WORD_RE.findall(text)

    def encode_line(self, line: str, eos: bool = True) -> List[int]:
        """One line or row -> token ids, ending with <eos> unless eos=False."""
        line = self._prep(line)
        if self.level == "char":
            get, unk = self.stoi.get, self.unk_id
            ids = [get(c, unk) for c in line if c not in _LINE_BREAKS]
        else:
            chunks = line.split()
            try:
                ids = list(_chain(map(self._memo.get, chunks)))
            except TypeError:  # a chunk not seen before (memo gave None): split it once, then it is a hit
                ids = list(_chain(map(self._chunk_ids, chunks)))
        if eos:
            ids.append(self.eos_id)
        return ids

    def _chunk_ids(self, chunk: str) -> tuple:
        ids = self._memo.get(chunk)
        if ids is None:
            get, unk = self.stoi.get, self.unk_id
            ids = tuple(get(t, unk) for t in self._split_chunk(chunk))
            if len(self._memo) < 2_000_000:  # bound the memo on adversarial input
                self._memo[chunk] = ids
        return ids

    def encode(self, text: str, eos: bool = False) -> List[int]:
        """Text (possibly several lines) -> ids; <eos> after every line but the last unless eos=True.
        A text ending in a line break ends in <eos> (the next token starts a line), so that
        ``encode(decode(ids)) == ids``."""
        lines = text.splitlines() or [""]
        if text and text.splitlines(keepends=True)[-1] != lines[-1]:
            lines.append("")   # splitlines drops the empty line after a final line break
        out: List[int] = []
        for i, line in enumerate(lines):
            out.extend(self.encode_line(line, eos=eos or i < len(lines) - 1))
        return out

    def encode_lines(self, lines: Iterable[str]) -> Iterator[np.ndarray]:
        """Stream of lines -> stream of int32 id arrays (one per ~64k ids), each line ending in <eos>."""
        buf: List[int] = []
        for line in lines:
            buf.extend(self.encode_line(line))
            if len(buf) >= 65_536:
                yield np.asarray(buf, dtype=np.int32)
                buf = []
        if buf:
            yield np.asarray(buf, dtype=np.int32)

    # ------------------------------------------------------------------------------------ decode

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Ids -> text, joined naturally: "the cat 's bowl ." -> "the cat's bowl."."""
        return self.join([self.itos[i] for i in ids], skip_special=skip_special)

    def join(self, tokens: Sequence[str], skip_special: bool = False) -> str:
        if self.level == "char":
            return "".join("\n" if t == EOS else t for t in tokens if not (skip_special and t in SPECIALS))
        out: List[str] = []
        prev = prev2 = None
        for tok in tokens:
            if tok == EOS:
                if not skip_special:
                    out.append("\n")
                prev = prev2 = None
                continue
            if skip_special and tok == UNK:
                continue
            if prev is not None:
                if self.level == "whitespace":
                    out.append(" ")
                elif not (tok in _NO_SPACE_BEFORE or prev in _NO_SPACE_AFTER
                          or (prev in ".," and tok.isdigit() and prev2 is not None and prev2.isdigit())):
                    out.append(" ")  # "3 . 14" -> "3.14", but "the end . 14" -> "the end. 14"
            out.append(tok)
            prev2, prev = prev, tok
        return "".join(out)

    # ----------------------------------------------------------------------------- serialization

    def to_dict(self) -> dict:
        return {"level": self.level, "lowercase": self.lowercase, "min_freq": self.min_freq,
                "max_vocab": self.max_vocab, "itos": list(self.itos)}

    @classmethod
    def from_dict(cls, d: dict) -> "Tokenizer":
        return cls(level=d["level"], lowercase=d["lowercase"], min_freq=d["min_freq"],
                   max_vocab=d["max_vocab"], itos=d["itos"])

    def __repr__(self) -> str:
        return f"Tokenizer(level={self.level!r}, vocab={len(self)}, lowercase={self.lowercase})"
