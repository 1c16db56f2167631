"""The network: Embedding -> dropout -> LSTM -> dropout -> output layer over the vocabulary.

The output layer is a full softmax for small vocabularies (optionally tied to the embedding) and an
adaptive softmax (Grave et al. 2017, ``nn.AdaptiveLogSoftmaxWithLoss``) from ``adaptive_threshold``
words on: the most frequent words get a full-size head, rarer words sit in smaller tail clusters reached
through the head. With 33k words that cuts the output layer's work (about 90% of a textbook step) by
roughly 10x at no cost in perplexity. Token ids are frequency-ordered, so cut-offs are rank cut-offs.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LSTMLanguageModel", "State", "adaptive_cutoffs", "build_network", "network_hparams"]

State = Tuple[torch.Tensor, torch.Tensor]  # (h, c), each (num_layers, B, hidden_dim)

_SCORE_BLOCK_ELEMS = 1_000_000   # logits per output-layer block when scoring (4 MB in fp32: stays in cache)


def _dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout as ``F.dropout`` in training: zero an element with probability p, scale the rest
    by 1/(1-p). On CPU the random numbers are the cost (``bernoulli_`` spent 0.8 ms on a (35, 20, 200)
    activation, an eighth of a 200x2 training step), so the keep-mask is drawn as random bytes, four per
    32-bit draw (0.19 ms): p is then taken in steps of 1/256 (0.2 -> 51/256 = 0.1992) and the scale
    matches the p actually used, so the expected activation is unchanged."""
    if p <= 0:
        return x
    if x.device.type != "cpu":
        keep = torch.rand(x.shape, device=x.device) >= p
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))
    cut = min(255, max(1, round(p * 256)))           # drop a byte below cut: probability cut / 256
    n = x.numel()
    draws = torch.empty((n + 3) // 4, dtype=torch.int32).random_(-2**31, 2**31 - 1)   # uniform 32-bit words
    keep = draws.view(torch.uint8)[:n].view(x.shape) >= cut
    return x * keep.to(x.dtype).mul_(256.0 / (256 - cut))


def adaptive_cutoffs(vocab_size: int) -> List[int]:
    """Rank cut-offs of the adaptive softmax: head = the 2,000 most frequent words, a first tail up to
    rank 10,000, a second tail for the rest (clusters that would be empty are dropped)."""
    return [c for c in (2_000, 10_000) if c < vocab_size - 1] or [max(1, vocab_size // 2)]


class LSTMLanguageModel(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int = 2,
                 dropout: float = 0.2, tie_weights: bool = True, adaptive: bool = False,
                 cutoffs: Optional[Sequence[int]] = None, head_bias: bool = False):
        super().__init__()
        self.vocab_size, self.embed_dim, self.hidden_dim = vocab_size, embed_dim, hidden_dim
        self.num_layers, self.adaptive = num_layers, adaptive
        self.tied = tie_weights and not adaptive  # the adaptive head has no one-row-per-word matrix to share
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers, dropout=dropout if num_layers > 1 else 0.0)
        out_dim = hidden_dim
        # Tying needs the LSTM output in embedding space: project when the sizes differ.
        self.proj = nn.Linear(hidden_dim, embed_dim, bias=False) if self.tied and hidden_dim != embed_dim else None
        if self.proj is not None:
            out_dim = embed_dim
        if adaptive:
            self.cutoffs = list(cutoffs or adaptive_cutoffs(vocab_size))
            # head_bias: the head's words and clusters get a bias, as a full softmax has; without it the
            # unigram frequencies must come through the hidden state, which costs a short run dearly
            # (one epoch on 117k tokens of WikiText-2 with SGD: val ppl 516 without, 464 with).
            self.head = nn.AdaptiveLogSoftmaxWithLoss(out_dim, vocab_size, self.cutoffs, div_value=4.0,
                                                      head_bias=head_bias)
            self.decoder = None
        else:
            self.cutoffs = []
            self.head = None
            self.decoder = nn.Linear(out_dim, vocab_size)
            if self.tied:
                self.decoder.weight = self.embed.weight
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        if self.decoder is not None:
            nn.init.zeros_(self.decoder.bias)
            if not self.tied:
                nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    # ----------------------------------------------------------------------------------- forward

    def init_state(self, batch_size: int) -> State:
        w = self.embed.weight
        z = w.new_zeros(self.num_layers, batch_size, self.hidden_dim)
        return z, z.clone()

    def features(self, ids: torch.Tensor, state: Optional[State] = None) -> Tuple[torch.Tensor, State]:
        """ids (T, B) -> LSTM outputs (T, B, D) ready for the output layer, and the new state."""
        if self.training and self.drop.p > 0:
            return self._train_features(ids, state)
        out, state = self.lstm(self.embed(ids), state)   # (T, B, H); dropout is the identity in eval mode
        if self.proj is not None:
            out = self.proj(out)                         # (T, B, E)
        return out, state

    def _train_features(self, ids: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        """features() in training: the same network and the same dropout as nn.Dropout + nn.LSTM, with
        the masks drawn by ``_dropout`` (see there: about 4x cheaper on CPU) and the layers run one
        ``torch.lstm`` call each so that the dropout between them is ours too. Same parameters, so model
        files are unchanged."""
        p, lstm = self.drop.p, self.lstm
        x = _dropout(self.embed(ids), p)                                   # (T, B, E)
        if state is None:
            state = self.init_state(ids.size(1))
        hs, cs = [], []
        for layer in range(self.num_layers):
            if layer:
                x = _dropout(x, lstm.dropout)
            weights = [getattr(lstm, f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            x, h, c = torch.lstm(x, (state[0][layer:layer + 1], state[1][layer:layer + 1]), weights, True, 1,
                                 0.0, True, False, False)
            hs.append(h)
            cs.append(c)
        out = _dropout(x, p)
        if self.proj is not None:
            out = self.proj(out)
        return out, (torch.cat(hs), torch.cat(cs))

    def features_step(self, ids: torch.Tensor, state: Optional[State] = None) -> Tuple[torch.Tensor, State]:
        """features() for inference on a few new tokens (T, 1), eval mode.

        nn.LSTM spends about a millisecond per call setting up its fused kernel, which dominates a
        one-token step at batch 1; torch.lstm_cell per layer does the same arithmetic in a fraction of
        that. Longer runs (a cold prefix) go through nn.LSTM, which wins there."""
        if ids.size(0) > 8 or self.training:
            return self.features(ids, state)
        if state is None:
            state = self.init_state(ids.size(1))
        hs, cs = list(state[0].unbind(0)), list(state[1].unbind(0))        # per layer, each (B, H)
        lstm = self.lstm
        outs = []
        for x in self.embed(ids):                                          # (B, E) per time step
            for layer in range(self.num_layers):
                hs[layer], cs[layer] = torch.lstm_cell(
                    x, (hs[layer], cs[layer]), getattr(lstm, f"weight_ih_l{layer}"),
                    getattr(lstm, f"weight_hh_l{layer}"), getattr(lstm, f"bias_ih_l{layer}"),
                    getattr(lstm, f"bias_hh_l{layer}"))
                x = hs[layer]
            outs.append(x)
        out = torch.stack(outs)                                            # (T, B, H)
        if self.proj is not None:
            out = self.proj(out)
        return out, (torch.stack(hs), torch.stack(cs))

    def log_probs(self, feats: torch.Tensor) -> torch.Tensor:
        """Features (..., D) -> log-probabilities over the whole vocabulary (..., V)."""
        shape = feats.shape[:-1]
        flat = feats.reshape(-1, feats.size(-1))
        if self.adaptive:
            lp = self.head.log_prob(flat.float())
        else:
            lp = F.log_softmax(self.decoder(flat).float(), dim=-1)
        return lp.view(*shape, self.vocab_size)

    def nll(self, feats: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-token negative log-likelihood (nats) of targets (...) given features (..., D); shape (N,)."""
        flat = feats.reshape(-1, feats.size(-1))
        t = targets.reshape(-1)
        if self.adaptive:
            return -self.head(flat, t).output.float()
        return F.cross_entropy(self.decoder(flat).float(), t, reduction="none")

    def score_nll(self, feats: torch.Tensor, targets: torch.Tensor, bf16: bool = False) -> torch.Tensor:
        """nll() for scoring (inference only): features (N, D), targets (N,) -> NLL (N,) float32.

        The output layer runs a block of rows at a time, so a block's (rows, V) logits stay in cache
        instead of one (N, V) array going through memory three times (logits, log-softmax, pick). With
        ``bf16`` the big matmul runs on bf16 inputs (fp32 accumulation, several times faster on CPUs with
        native bf16); the target's logit is still computed exactly in fp32 and only the normaliser
        (logsumexp over the vocabulary) sees bf16 rounding: per-token error ~1e-2 nats, mostly averaging
        out over a row (see ``benchmarks/scoring.py``). The adaptive softmax always runs in fp32."""
        n = feats.size(0)
        out = torch.empty(n, dtype=torch.float32, device=feats.device)
        rows = int(min(4096, max(64, _SCORE_BLOCK_ELEMS // self.vocab_size)))   # (rows, V) fp32 logits
        if self.adaptive:   # fp32: the head computes only what each target needs already
            feats = feats.float()
            for s in range(0, n, rows):
                out[s:s + rows] = -self.head(feats[s:s + rows], targets[s:s + rows]).output
            return out
        w, b = self.decoder.weight, self.decoder.bias
        feats = feats.float()
        if not bf16:
            for s in range(0, n, rows):
                logits = torch.addmm(b, feats[s:s + rows], w.t())                      # (rows, V)
                out[s:s + rows] = F.cross_entropy(logits, targets[s:s + rows], reduction="none")
            return out
        # bf16: cross_entropy (a fused log-softmax, faster than logsumexp) on the rounded logits, then
        # its target logit swapped for the exact one: a (N, D) gather of output rows, cheap next to (N, V).
        exact = torch.einsum("nd,nd->n", feats, w[targets]) + b[targets]
        wb = w.bfloat16()
        for s in range(0, n, rows):
            t = targets[s:s + rows]
            logits = torch.mm(feats[s:s + rows].bfloat16(), wb.t()).float().add_(b)   # (rows, V)
            out[s:s + rows] = F.cross_entropy(logits, t, reduction="none") + logits.gather(1, t[:, None])[:, 0]
        return out.sub_(exact)

    def forward(self, ids: torch.Tensor, state: Optional[State] = None,
                targets: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, State]:
        """With targets: (mean NLL, state) for training. Without: (log-probs (T, B, V), state)."""
        feats, state = self.features(ids, state)
        if targets is not None:
            return self.nll(feats, targets).mean(), state
        return self.log_probs(feats), state

    # ------------------------------------------------------------------------------- fast decoding

    def _head_lp(self, feats: torch.Tensor) -> torch.Tensor:
        """Adaptive head log-probs (shortlist words + one entry per tail cluster) for features (D,)."""
        return torch.log_softmax(self.head.head(feats).float(), dim=-1)

    def _cluster_lp(self, feats: torch.Tensor, i: int, head_lp: torch.Tensor) -> torch.Tensor:
        """Log-probs of the words of tail cluster i: log p(cluster) + log p(word | cluster)."""
        tail = torch.log_softmax(self.head.tail[i](feats).float(), dim=-1)
        return head_lp[self.head.shortlist_size + i] + tail

    def topk_next(self, feats: torch.Tensor, k: int, exclude: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The k most likely next ids (log-probs, ids) from features (D,), ids in `exclude` left out.

        Adaptive softmax: a word of tail cluster c has p(word) <= p(c), so a cluster whose head
        probability is below the k-th best candidate cannot contribute and its tail is never computed.
        Most steps read only the head's weights (a fraction of the full output layer)."""
        if not self.adaptive:
            lp = self.log_probs(feats.unsqueeze(0))[0]
            lp[exclude] = -math.inf
            return torch.topk(lp, k)
        head_lp = self._head_lp(feats)
        short = head_lp[: self.head.shortlist_size].clone()
        short[exclude[exclude < short.numel()]] = -math.inf
        vals, ids = torch.topk(short, min(k, short.numel()))
        order = torch.argsort(head_lp[self.head.shortlist_size:], descending=True).tolist()
        for i in order:
            c_lp = head_lp[self.head.shortlist_size + i]
            if vals.numel() >= k and c_lp <= vals[-1]:
                break   # clusters are visited by falling probability: none after this one can help
            lp = self._cluster_lp(feats, i, head_lp)
            lo = self.head.cutoffs[i]
            ex = exclude[(exclude >= lo) & (exclude < lo + lp.numel())] - lo
            lp[ex] = -math.inf
            cv, ci = torch.topk(lp, min(k, lp.numel()))
            vals, idx = torch.topk(torch.cat([vals, cv]), min(k, vals.numel() + cv.numel()))
            ids = torch.cat([ids, ci + lo])[idx]
        return vals, ids

    def sample_next(self, feats: torch.Tensor, gen: torch.Generator, exclude: torch.Tensor) -> int:
        """Sample one id from p(. | feats) exactly (temperature 1, no filtering).

        Adaptive softmax: sample in the head (words + clusters); if a cluster comes up, sample inside it.
        p(word) = p(cluster) p(word | cluster), so this is exact and computes at most one tail."""
        if not self.adaptive:
            lp = self.log_probs(feats.unsqueeze(0))[0]
            lp[exclude] = -math.inf
            return int(torch.multinomial(lp.exp(), 1, generator=gen))
        head_lp = self._head_lp(feats)
        head_lp[exclude[exclude < self.head.shortlist_size]] = -math.inf
        j = int(torch.multinomial(head_lp.exp(), 1, generator=gen))
        if j < self.head.shortlist_size:
            return j
        i = j - self.head.shortlist_size
        lo = self.head.cutoffs[i]
        tail = torch.log_softmax(self.head.tail[i](feats).float(), dim=-1)
        ex = exclude[(exclude >= lo) & (exclude < lo + tail.numel())] - lo
        tail[ex] = -math.inf
        return lo + int(torch.multinomial(tail.exp(), 1, generator=gen))

    # ------------------------------------------------------------------------------------ describe

    def hparams(self) -> dict:
        """What is needed to rebuild this network (stored in model files)."""
        return {"vocab_size": self.vocab_size, "embed_dim": self.embed_dim, "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers, "dropout": self.drop.p, "tie_weights": self.tied,
                "adaptive": self.adaptive, "cutoffs": list(self.cutoffs),
                "head_bias": bool(self.adaptive and self.head.head.bias is not None)}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights are counted once


# ------------------------------------------------------------------------------------------ building

def network_hparams(cfg, vocab_size: int) -> Tuple[dict, List[str]]:
    """The hyper-parameters of the network a resolved TrainConfig asks for, and why (for the summary).

    The adaptive softmax is chosen here: ``softmax='adaptive'``, or ``'auto'`` from
    ``adaptive_threshold`` words on (never below 4 words: nothing to split into clusters).
    """
    adaptive = cfg.softmax == "adaptive" or (cfg.softmax == "auto" and vocab_size >= cfg.adaptive_threshold)
    adaptive = adaptive and vocab_size >= 4
    why = ([f"adaptive softmax: {vocab_size:,} words >= adaptive_threshold {cfg.adaptive_threshold:,}"]
           if adaptive and cfg.softmax == "auto" else [])
    return {"vocab_size": vocab_size, "embed_dim": cfg.embed_dim, "hidden_dim": cfg.hidden_dim,
            "num_layers": cfg.num_layers, "dropout": cfg.dropout, "tie_weights": cfg.tie_weights,
            "adaptive": adaptive, "cutoffs": None, "head_bias": adaptive}, why


def build_network(hparams: dict, seed: Optional[int] = None) -> LSTMLanguageModel:
    """The one way a network is built: from ``hparams`` (a model file's, or ``network_hparams``'s).
    With a seed the initial weights are repeatable (and the same on every rank of a distributed run)."""
    if seed is not None:
        torch.manual_seed(seed)
    h = hparams
    return LSTMLanguageModel(h["vocab_size"], h["embed_dim"], h["hidden_dim"], h["num_layers"], h["dropout"],
                             h["tie_weights"], h["adaptive"], h.get("cutoffs") or None,
                             bool(h.get("head_bias", False)))   # files from before head_bias have none
