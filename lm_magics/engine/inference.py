"""Using a trained network: next-word distributions, generation (sampling and beam search), scoring.

Everything here runs under ``torch.inference_mode`` with the network in eval mode. A context always
starts with ``<eos>``: training rows end with it, so "just after <eos>" is what the model knows as
"start of text" (an empty prefix asks exactly that).

The prefix cache makes type-ahead cheap: it keeps the LSTM state at the end of each recent call
(checkpoints), so a prefix that extends, or shortens back to, a cached one costs only the new tokens.
"""

from __future__ import annotations

import bisect
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from itertools import chain as _chain
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..config import GenerateConfig
from . import memory
from .model import LSTMLanguageModel, State
from .precision import scoring_bf16
from .threads import inference_threads, using_threads
from .tokenizer import SPECIALS, Tokenizer

__all__ = ["Predictor", "RepeatRules", "REPEAT_WINDOW"]

_MAX_CHECKPOINTS = 64
_PART_MIN_TOKENS = 2_048       # the smallest scoring batch when splitting rows across threads
_POOL: Optional[ThreadPoolExecutor] = None
_SCORE_BATCH_TOKENS = 32_768   # tokens per scoring batch (rows x padded length); the output layer
                               # runs in blocks, so memory is O(batch x hidden), not O(batch x V)
REPEAT_WINDOW = 128            # tokens back (prefix and generated) that the repetition rules look at


class Vocabulary:
    """What every predictor does with its tokenizer: the context ids of a prefix, the words that start
    with a half-typed stem, and the top-k words of a next-token distribution."""

    def __init__(self, tokenizer: Tokenizer):
        self.tok = tokenizer
        self._special_ids = torch.tensor([tokenizer.stoi[s] for s in SPECIALS])
        self._sorted_vocab: Optional[Tuple[List[str], np.ndarray]] = None
        self._word_mask: Optional[torch.Tensor] = None

    def word_mask(self) -> torch.Tensor:
        """(V,) bool: True for tokens with a letter or digit (the words a repetition penalty applies to)."""
        if self._word_mask is None:
            self._word_mask = torch.tensor([any(c.isalnum() for c in w) and w not in SPECIALS
                                            for w in self.tok.itos], dtype=torch.bool)
        return self._word_mask

    def repeat_rules(self, cfg: GenerateConfig) -> "RepeatRules":
        return RepeatRules(cfg, self.word_mask(), self.tok.eos_id)

    def context_ids(self, prefix: str) -> List[int]:
        """<eos> + the prefix's ids (unseen words -> <unk>, lines separated by <eos>)."""
        ids = [self.tok.eos_id]
        if prefix.strip():
            ids.extend(self.tok.encode(prefix))
        return ids

    def _ids_starting_with(self, stem: str) -> torch.Tensor:
        """Vocabulary ids of words that start with stem (binary search in a sorted copy)."""
        if self._sorted_vocab is None:
            order = sorted(range(len(self.tok.itos)), key=self.tok.itos.__getitem__)
            self._sorted_vocab = ([self.tok.itos[i] for i in order], np.asarray(order))
        words, order = self._sorted_vocab
        lo = bisect.bisect_left(words, stem)
        hi = bisect.bisect_left(words, stem + "\U0010ffff")
        return torch.from_numpy(order[lo:hi])

    def _top_words(self, lp: torch.Tensor, k: int, include_special: bool,
                   startswith: Optional[str]) -> List[Tuple[str, float]]:
        """The k likeliest words of log-probs lp (V,), optionally only those starting with a stem."""
        if startswith:
            ids = self._ids_starting_with(self.tok._prep(startswith))
            if not include_special:
                ids = ids[~torch.isin(ids, self._special_ids)]
            if ids.numel() == 0:
                return []
            vals, idx = torch.topk(lp[ids], min(k, ids.numel()))
            idx = ids[idx]
        else:
            if not include_special:
                lp = lp.clone()
                lp[self._special_ids] = -math.inf
            n = len(self.tok) - (0 if include_special else len(SPECIALS))
            vals, idx = torch.topk(lp, max(0, min(k, n)))
        itos = self.tok.itos
        return [(itos[i], p) for i, p in zip(idx.tolist(), vals.exp().tolist())]


class Predictor(Vocabulary):
    """Inference over one (network, tokenizer) pair. Thread-safe; one per LanguageModel.

    Every call runs on the thread count of ``threads.inference_threads`` (``threads`` given wins): on a
    machine whose other processes hold the cores, one thread (torch's threads would stall on them)."""

    def __init__(self, net: LSTMLanguageModel, tokenizer: Tokenizer, precision: str = "auto",
                 threads: Optional[int] = None):
        super().__init__(tokenizer)
        self.net = net.eval()
        self.precision = precision   # scoring's output layer: see precision.scoring_bf16
        self.threads = threads       # an explicit thread count (the model's threads= option), else decided
        self.device = next(net.parameters()).device
        self._lock = threading.RLock()
        self._checkpoints: List[Tuple[Tuple[int, ...], State]] = []   # (context ids, state after them)
        self._last: Optional[Tuple[Tuple[int, ...], torch.Tensor]] = None  # (ids, log-probs after them)
        self._no_ids = torch.zeros(0, dtype=torch.long)
        self._unk_only = torch.tensor([tokenizer.unk_id])

    def _thread_count(self) -> int:
        """Threads for the next call (the one decision of engine/threads.py; 1 off the CPU, where it is moot)."""
        return inference_threads(self.threads)[0] if self.device.type == "cpu" else torch.get_num_threads()

    # ------------------------------------------------------------------------------ context state

    def _run(self, ids: Sequence[int], state: Optional[State]) -> Tuple[torch.Tensor, State]:
        x = torch.tensor(ids, dtype=torch.long, device=self.device).view(-1, 1)   # (T, 1)
        feats, state = self.net.features_step(x, state)                            # (T, 1, D)
        return feats[-1, 0], state

    def features_after(self, ids: Sequence[int]) -> torch.Tensor:
        """Output-layer input (D,) for the next token after context ids, using the checkpoint cache."""
        key = tuple(ids)
        with self._lock, torch.inference_mode():
            if self._last is not None and self._last[0] == key:
                return self._last[1]
            # Longest cached context that is a prefix of this one (type-ahead extends, backspace shrinks).
            best_len, state = 0, None
            for ck_ids, ck_state in self._checkpoints:
                n = len(ck_ids)
                if best_len < n <= len(key) and key[:n] == ck_ids:
                    best_len, state = n, ck_state
            if best_len == len(key):  # an exact checkpoint: its top-layer h is the output
                feats = state[0][-1, 0]
                if self.net.proj is not None:
                    feats = self.net.proj(feats)
            else:
                feats, state = self._run(key[best_len:], state)
                self._checkpoints.append((key, state))
                if len(self._checkpoints) > _MAX_CHECKPOINTS:
                    self._checkpoints.pop(0)
            self._last = (key, feats)
            return feats

    def log_probs_after(self, ids: Sequence[int]) -> torch.Tensor:
        """Log-probabilities (V,) of the next token after context ids."""
        with using_threads(self._thread_count()), torch.inference_mode():
            return self.net.log_probs(self.features_after(ids).unsqueeze(0))[0]

    def clear_cache(self) -> None:
        with self._lock:
            self._checkpoints.clear()
            self._last = None

    # ------------------------------------------------------------------------------ next words

    def next_words(self, prefix: str, k: int = 5, include_special: bool = False,
                   startswith: Optional[str] = None) -> List[Tuple[str, float]]:
        """Top-k next tokens after prefix as (token, probability), most likely first."""
        ids_ctx = self.context_ids(prefix)
        if not startswith:
            # The pruned top-k over the output layer: exact, without the whole distribution.
            exclude = self._no_ids if include_special else self._special_ids
            n = len(self.tok) - exclude.numel()
            with self._lock, using_threads(self._thread_count()), torch.inference_mode():
                vals, idx = self.net.topk_next(self.features_after(ids_ctx), max(0, min(k, n)), exclude)
            itos = self.tok.itos
            return [(itos[i], p) for i, p in zip(idx.tolist(), vals.exp().tolist())]
        return self._top_words(self.log_probs_after(ids_ctx), k, include_special, startswith)

    # ------------------------------------------------------------------------------ generation

    def generate(self, prefix: str, cfg: GenerateConfig, stop_at_eos: bool = False) -> List[int]:
        """Ids of cfg.n_words new tokens after prefix (sampling, greedy at temperature 0, or beam)."""
        if cfg.beam > 1:
            return self._beam(prefix, cfg, stop_at_eos)
        gen = torch.Generator(device="cpu")
        gen.manual_seed(cfg.seed if cfg.seed is not None else int(torch.seed() % 2**63))
        ids = self.context_ids(prefix)
        out: List[int] = []
        unk, eos = self.tok.unk_id, self.tok.eos_id
        rules = self.repeat_rules(cfg)
        with self._lock, using_threads(self._thread_count()), torch.inference_mode():
            feats = self.features_after(ids)
            state = self._state_for(ids)
            # Plain sampling needs no full distribution: the network samples hierarchically (exact), and
            # the rules, if any, accept or reject what it draws (rules.sample).
            plain = cfg.temperature == 1.0 and cfg.top_k == 0 and cfg.top_p >= 1.0
            for _ in range(cfg.n_words):
                if plain:
                    nxt = rules.sample(lambda: self.net.sample_next(feats, gen, self._unk_only), gen, ids, out)
                    if nxt is None:       # rejected again and again: draw from the whole distribution
                        lp = rules.apply(self.net.log_probs(feats.unsqueeze(0))[0], ids, out)
                        nxt = _pick(lp, cfg, gen, unk)
                elif cfg.temperature == 0 and not rules.active:
                    nxt = int(self.net.topk_next(feats, 1, self._unk_only)[1][0])
                else:
                    lp = rules.apply(self.net.log_probs(feats.unsqueeze(0))[0], ids, out)
                    nxt = _pick(lp, cfg, gen, unk)
                if rules.ends_text(ids, out, nxt):
                    break
                out.append(nxt)
                if stop_at_eos and nxt == eos:
                    break
                feats, state = self._run([nxt], state)
        return out

    def _state_for(self, ids: Sequence[int]) -> State:
        for ck_ids, ck_state in self._checkpoints:
            if ck_ids == tuple(ids):
                return ck_state
        return self._run(ids, None)[1]

    def _beam(self, prefix: str, cfg: GenerateConfig, stop_at_eos: bool) -> List[int]:
        """Beam search: keep the cfg.beam most likely continuations, return the best one."""
        # Each step holds a (beams, V) block of scores in a few copies: refuse a width that cannot fit.
        net = self.net
        memory.check(memory.beam_bytes(cfg.beam, len(self.tok), cfg.n_words, net.hidden_dim, net.num_layers,
                                       net.embed_dim if net.proj is not None else net.hidden_dim),
                     f"Beam search with beam={cfg.beam:,} over {len(self.tok):,} words",
                     "use a smaller beam (4 to 10 is usual)", device=self.device)
        ids = self.context_ids(prefix)
        unk, eos = self.tok.unk_id, self.tok.eos_id
        rules = self.repeat_rules(cfg)
        with self._lock, using_threads(self._thread_count()), torch.inference_mode():
            lp = self.log_probs_after(ids).clone()
            h, c = self._state_for(ids)
            beams: List[List[int]] = [[]]
            scores = torch.zeros(1)
            done: List[Tuple[float, List[int]]] = []
            for _ in range(cfg.n_words):
                lp = lp.view(len(beams), -1).clone()
                if rules.active:                                                 # each beam's own history
                    lp = torch.stack([rules.apply(row, ids, b) for row, b in zip(lp, beams)])
                lp[:, unk] = -math.inf
                total = (scores.unsqueeze(1) + lp).view(-1)                       # (beams * V)
                top_s, top_i = torch.topk(total, min(cfg.beam, total.numel()))
                V = lp.size(1)
                src, tok = (top_i // V).tolist(), (top_i % V).tolist()
                new_beams, keep, new_scores = [], [], []
                for s, b, t in zip(top_s.tolist(), src, tok):
                    seq = beams[b] + [t]
                    if rules.ends_text(ids, beams[b], t):                      # a blank line: ends before it
                        done.append((s / len(seq), beams[b]))
                        continue
                    if stop_at_eos and t == eos:
                        done.append((s / len(seq), seq))
                        continue
                    new_beams.append(seq), keep.append(b), new_scores.append(s)
                if not new_beams:
                    break
                beams, scores = new_beams, torch.tensor(new_scores)
                idx = torch.tensor(keep, device=self.device)
                h, c = h[:, idx].contiguous(), c[:, idx].contiguous()            # (L, beams, H)
                x = torch.tensor([b[-1] for b in beams], device=self.device).view(1, -1)
                feats, (h, c) = self.net.features_step(x, (h, c))
                lp = self.net.log_probs(feats[0])                                # (beams, V)
            done.extend((s / max(1, len(b)), b) for s, b in zip(scores.tolist(), beams))
        return max(done, key=lambda sb: sb[0])[1] if done else []

    # ------------------------------------------------------------------------------ scoring

    def row_nll(self, rows: Sequence[Optional[str]]) -> List[Optional[np.ndarray]]:
        """Per-token NLL (nats, float64 array; last entry is the row's <eos>) for each row; None stays None.

        Rows are sorted by length and packed into batches of similar lengths (right-padded; the LSTM is
        causal, so padding after a row never changes its scores), so batched equals one at a time.
        """
        return self.encoded_nll([None if r is None else self.tok.encode_line(r) for r in rows])

    def encoded_nll(self, encoded: Sequence[Optional[List[int]]]) -> List[Optional[np.ndarray]]:
        """row_nll for rows already encoded (ids ending in <eos>); None stays None."""
        out: List[Optional[np.ndarray]] = [None] * len(encoded)
        keep = [i for i, e in enumerate(encoded) if e is not None]
        if not keep:
            return out
        lens = np.fromiter((len(encoded[i]) for i in keep), dtype=np.int64, count=len(keep))
        order = np.asarray(keep, dtype=np.int64)[np.argsort(lens, kind="stable")]
        lens = np.sort(lens, kind="stable")
        threads = self._thread_count() if self.device.type == "cpu" else 1
        # Enough batches for every thread to have some (but none under a few thousand tokens).
        budget = int(np.clip(lens.sum() // threads, _PART_MIN_TOKENS, _SCORE_BATCH_TOKENS))
        batches, start = [], 0
        while start < len(order):
            # Rows sorted by length: grow the batch while rows x its longest row fits the budget.
            ahead = lens[start:start + budget]                                   # never more rows than that
            cost = np.arange(1, len(ahead) + 1) * ahead                          # k rows x k-th length
            end = start + max(1, int(np.searchsorted(cost, budget, side="right")))
            batches.append((order[start:end], lens[start:end]))
            start = end
        bf16 = scoring_bf16(self.precision, self.device)
        with self._lock:
            if threads < 2 or len(batches) < 2:
                with using_threads(threads if self.device.type == "cpu" else torch.get_num_threads()):
                    done = (self._batch_nll(encoded, rows, n, bf16) for rows, n in batches)
                    for (rows, _), nll in zip(batches, done):
                        for i, v in zip(rows.tolist(), nll):
                            out[i] = v
                return out
            # CPU: one single-threaded batch per Python thread (torch releases the GIL). With torch's own
            # threads every op is a parallel region whose barrier stalls whenever another process holds
            # a core (a shared machine: 3-10x slower); whole batches per thread need no barriers and
            # scale as well on an idle machine.
            global _POOL
            if _POOL is None or _POOL._max_workers < threads:
                _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lm_magics-score")
            prev = torch.get_num_threads()
            torch.set_num_threads(1)   # the pool's threads take it up; put back below
            try:
                futs = [_POOL.submit(self._batch_nll, encoded, rows, n, bf16) for rows, n in batches]
                for (rows, _), fut in zip(batches, futs):
                    for i, v in zip(rows.tolist(), fut.result()):
                        out[i] = v
            finally:
                torch.set_num_threads(prev)
        return out

    def _batch_nll(self, encoded: Sequence[Optional[List[int]]], rows: np.ndarray, n: np.ndarray,
                   bf16: bool) -> List[np.ndarray]:
        """Per-token NLL of one batch: rows (indices into encoded) of lengths n, shortest first."""
        T, B, eos = int(n[-1]), len(rows), self.tok.eos_id
        flat = np.fromiter(_chain.from_iterable(encoded[i] for i in rows), dtype=np.int64, count=int(n.sum()))
        # Row-major (B, T) grid of real positions; the LSTM wants (T, B), <eos> first.
        real = np.arange(T)[None, :] < n[:, None]                                # (B, T)
        tgt = np.full((B, T), eos, dtype=np.int64)
        tgt[real] = flat
        inp = np.full((B, T), eos, dtype=np.int64)
        inp[:, 1:] = tgt[:, :-1]
        with torch.inference_mode():   # grad mode is per thread: a pool worker starts outside it
            feats, _ = self.net.features(torch.from_numpy(inp.T.copy()).to(self.device))   # (T, B, D)
            # The output layer only at real positions: (B, T)-major, so each row is one slice.
            pos = torch.from_numpy(np.flatnonzero(real)).to(self.device)
            nll = self.net.score_nll(feats.transpose(0, 1).reshape(B * T, -1)[pos],
                                     torch.from_numpy(tgt.ravel()).to(self.device)[pos], bf16=bf16)
        return np.split(nll.double().cpu().numpy(), np.cumsum(n)[:-1])

class RepeatRules:
    """What keeps generation from looping: ``repetition_penalty``, ``no_repeat_ngram`` and
    ``stop_at_blank_line`` of a GenerateConfig, for every predictor (LSTM, n-gram, mixture) and for both
    sampling and beam search.

    The first two look at the last ``REPEAT_WINDOW`` tokens of the history (the context ids, the prefix's
    included, then the generated ones). A penalty divides the probability of a word already there
    (log-prob minus log(penalty)); punctuation and line ends are left alone (every line ends, most sentences
    have a comma). An n-gram ban makes impossible the tokens that would repeat a run of ``no_repeat_ngram``
    tokens. With ``stop_at_blank_line`` a generation never starts with a blank line (a line end right after
    a line end is not sampled before the first word) and ends before one after it (``ends_text``).
    All are pure functions of the history, so the same seed still gives the same text.
    """

    def __init__(self, cfg: GenerateConfig, word_mask: torch.Tensor, eos: int):
        self.log_penalty = math.log(cfg.repetition_penalty)
        self.n = cfg.no_repeat_ngram
        self.blank_stop = cfg.stop_at_blank_line
        self.active = self.log_penalty > 0 or self.n > 0 or self.blank_stop
        self.words, self.eos = word_mask, eos

    def banned(self, recent: Sequence[int]) -> List[int]:
        """Tokens that would end a repeat of an n-gram of recent (the last n - 1 tokens seen before)."""
        n = self.n
        if n < 2 or len(recent) < n:
            return []
        tail = list(recent[len(recent) - n + 1:])
        return [recent[i + n - 1] for i in range(len(recent) - n + 1) if list(recent[i:i + n - 1]) == tail]

    def apply(self, lp: torch.Tensor, context: Sequence[int], out: Sequence[int]) -> torch.Tensor:
        """Log-probs lp (V,) of the token after context + out, with the rules applied (a new tensor; not
        renormalised: sampling does that)."""
        if not self.active:
            return lp
        recent = (list(context) + list(out))[-REPEAT_WINDOW:]
        res = lp.clone()
        if self.log_penalty > 0 and recent:
            seen = torch.tensor(sorted(set(recent)), dtype=torch.long)
            seen = seen[self.words[seen]]
            res[seen.to(res.device)] -= self.log_penalty
        ban = self.banned(recent)
        if self.blank_stop and recent[-1] == self.eos and not self._has_word(out):
            ban.append(self.eos)                     # no blank line before the first word
        if ban:
            res[torch.tensor(ban, dtype=torch.long, device=res.device)] = -math.inf
            if not torch.isfinite(res).any():        # every token banned (a tiny vocabulary): ban nothing
                return lp.clone()
        return res

    def weight(self, token: int, context: Sequence[int], out: Sequence[int]) -> float:
        """The factor the rules put on token's probability after context + out: 0 (banned), 1 / penalty
        (a word seen in the window) or 1."""
        recent = (list(context) + list(out))[-REPEAT_WINDOW:]
        if token in self.banned(recent) or (self.blank_stop and token == self.eos and recent[-1] == self.eos
                                            and not self._has_word(out)):
            return 0.0
        return math.exp(-self.log_penalty) if bool(self.words[token]) and token in recent else 1.0

    def sample(self, draw: Any, gen: torch.Generator, context: Sequence[int], out: Sequence[int],
               tries: int = 16) -> Optional[int]:
        """A token drawn from p x weight by rejection: draw() samples p (temperature 1, no filtering),
        a draw is kept with probability weight(token). Exact, without the whole distribution; None when
        ``tries`` draws were all rejected (the caller then samples the whole, ruled distribution)."""
        for _ in range(tries if self.active else 1):
            token = draw()
            if not self.active:
                return token
            w = self.weight(token, context, out)
            if w >= 1.0 or (w > 0.0 and float(torch.rand(1, generator=gen)) < w):
                return token
        return None

    def ends_text(self, context: Sequence[int], out: Sequence[int], nxt: int) -> bool:
        """True when nxt, after context + out, would make a blank line and out has a word already
        (stop_at_blank_line: the text ends at the end of its paragraph, before the blank line)."""
        if not (self.blank_stop and nxt == self.eos and self._has_word(out)):
            return False
        return (out[-1] if out else context[-1]) == self.eos

    def _has_word(self, out: Sequence[int]) -> bool:
        return any(t != self.eos for t in out)


def _pick(lp: torch.Tensor, cfg: GenerateConfig, gen: torch.Generator, unk: int) -> int:
    """Choose the next id from log-probs (V,): greedy at temperature 0, else filtered sampling.

    Numerically safe for every temperature the config allows: the log-probs are shifted so that the most
    likely word has 0 and divided in float64, so the best word keeps weight exp(0) = 1 however small or
    large the temperature (float32 would turn lp / 1e-300 into all -inf, and lp / 1e308 into NaN), and
    top-p always keeps at least the best word.
    """
    lp = lp.to(torch.float64, copy=True)             # (V,) a copy: the cached log-probs stay as they are
    lp[unk] = -math.inf
    if cfg.temperature == 0:
        return int(torch.argmax(lp))
    logits = (lp - lp.max()) / cfg.temperature       # max 0, the rest <= 0 or -inf; never NaN
    if cfg.top_k > 0:
        kth = torch.topk(logits, min(cfg.top_k, logits.numel())).values[-1]
        logits[logits < kth] = -math.inf
    if cfg.top_p < 1.0:
        sorted_l, sorted_i = torch.sort(logits, descending=True)
        p = torch.softmax(sorted_l, -1)
        cut = p.cumsum(-1) - p >= cfg.top_p          # keep the smallest set reaching top_p
        cut[0] = False                               # ... and always the most likely word
        logits[sorted_i[cut]] = -math.inf
    probs = torch.softmax(logits, -1).cpu()
    return int(torch.multinomial(probs, 1, generator=gen))


pick_token = _pick    # the public name: the n-gram's sampling uses the LSTM's rule
