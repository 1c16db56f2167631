"""The unusual-row finder as a measuring instrument: one-class text anomaly detection on real labelled sets.

    python -m benchmarks.anomaly                       # every set found, the sizes below
    python -m benchmarks.anomaly --quick               # smaller subsamples, a shorter training budget
    python -m benchmarks.anomaly --sets 20ng,sms_spam  # some sets only
    python -m benchmarks.anomaly --max-time 0 --train-rows 1000 --test-rows 1000 --seed 0    # the defaults

Protocol (one-class, as Ruff et al. 2019 (CVDD) and Manolache et al. 2021 (DATE) run it): train on the rows
of one class (the "usual" rows), score a test set in which the other classes are the anomalies; AUROC and
AUPRC of each score (higher = more unusual) against the label.

- ``20ng``: 20 Newsgroups by date, its six top-level groups (comp, rec, sci, misc, pol, rel) one at a time as
  the usual class; headers, signatures and quoted replies removed (scikit-learn's ``remove=(...)``), text
  cleaned as CVDD/DATE do (lower case, punctuation and digits removed, stop words and words under three
  letters dropped; scikit-learn's English stop-word list, as NLTK's is not installed here). Training rows:
  the group's training documents, subsampled to ``--train-rows``; test rows: a seeded stratified subsample
  of the test documents (``--test-rows``), the group's own rows normal, the rest anomalies.
- ``ag_news``: AG News, its four classes one at a time. Only the 7,600-row test file could be obtained
  (see /work/shared/data/anomaly/README.md), so each class's rows are split in two (seeded): one half
  trains, the other halves of all four classes make the test set. Same text cleaning as 20ng.
- other columns, raw text as a user has it: ``sms_spam`` (ham usual; Text-ADBench's split: the first 747
  ham and the 747 spam are the test set whatever ``--test-rows``, the other ham rows train), ``bgl`` (BGL log lines from Loghub,
  non-alert lines usual; a seeded half of the lines trains on its non-alerts, the other half is the test
  set), ``youtube_spam`` (non-spam comments usual; same half split).

Every split: 10% of the training rows (seeded) are held out as validation rows and passed as ``val_data``;
they are also the calibration rows of the combinations. Scores measured in the same run:

- ``default``: what the project writes for a row, ``COL_unusual`` of ``score_frame`` (the model's stored
  rule over its calibrated signals), see ``project_default``;
- the model's own signals alone (``model.signals``, the LSTM trained with the project's defaults: its time
  budget): ``ppl`` (mean surprisal per token, as ``COL_bits``), ``max`` (the most surprising word),
  ``topk`` (mean of the 3 most surprising), ``unseen`` (words never seen, at their novelty bits),
  ``ngram`` (the n-gram baseline's bits per token), ``knn`` (mean distance to the 5 nearest training rows
  of the model's neighbour index);
- other combinations of them over the model's calibration on the validation rows (each signal as its
  percentile among them): ``cal_mean6`` (the mean of all six; the default leaves ``topk`` out),
  ``cal_max`` (the largest), ``cal_fisher`` (sum of -log2(1 - p));
- scikit-learn baselines: TF-IDF of words and of character 3-5-grams, each with kNN (mean cosine distance
  to the 5 nearest training rows), IsolationForest and a one-class SVM (RBF, nu=0.1), as Ruff et al.'s
  OC-SVM baseline over TF-IDF bag-of-words.

Data: ``$LM_MAGICS_SHARED/data/anomaly/<set>/`` (default ``../shared/data/anomaly``); a set whose folder is
absent is skipped with a line that says how to get it. Nothing is tuned on one set: every set is reported,
every time. Published figures for the matching protocols are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import re
import string
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

import lm_magics as lm

from .common import SHARED, machine_line

DATA = SHARED / "anomaly"

GROUPS_20NG = {
    "comp": ("comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware", "comp.sys.mac.hardware",
             "comp.windows.x"),
    "rec": ("rec.autos", "rec.motorcycles", "rec.sport.baseball", "rec.sport.hockey"),
    "sci": ("sci.crypt", "sci.electronics", "sci.med", "sci.space"),
    "misc": ("misc.forsale",),
    "pol": ("talk.politics.misc", "talk.politics.guns", "talk.politics.mideast"),
    "rel": ("talk.religion.misc", "alt.atheism", "soc.religion.christian"),
}
AG_CLASSES = {1: "world", 2: "sports", 3: "business", 4: "sci"}
SETS = ("20ng", "ag_news", "sms_spam", "bgl", "youtube_spam")
HOW_TO_GET = {
    "20ng": "20newsgroups/20news-bydate.csv.gz (columns split, group, id, text: the 20news-bydate train and test "
            "folders with headers, footers and quotes removed, e.g. from sklearn.datasets.fetch_20newsgroups("
            "subset=..., remove=('headers', 'footers', 'quotes')))",
    "ag_news": "ag_news/test.csv (AG News ag_news_csv/test.csv: label 1-4, title, description)",
    "sms_spam": "sms_spam/SMSSpamCollection.tsv (UCI SMS Spam Collection: label<TAB>text, a header line)",
    "bgl": "bgl/BGL_2k.log_structured.csv (Loghub, BGL/BGL_2k.log_structured.csv)",
    "youtube_spam": "youtube_spam/Youtube0*.csv (UCI YouTube Spam Collection: CONTENT, CLASS columns)",
}


# ----------------------------------------------------------------------------------------------- metrics

def auroc(scores: Sequence[float], y: Sequence[int]) -> float:
    """Area under the ROC curve of ``scores`` for telling the positives (y == 1) as the higher ones; ties
    count half. NaN scores rank lowest (a row that could not be scored is not flagged)."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties (1-based)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auprc(scores: Sequence[float], y: Sequence[int]) -> float:
    """Average precision (the area under the precision-recall curve as scikit-learn's
    ``average_precision_score`` computes it: sum over thresholds of precision x recall step); tied scores
    form one threshold."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]   # the last row of each group of tied scores
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


# ------------------------------------------------------------------------------------------------- data

@dataclass
class Split:
    set: str
    name: str                  # the usual class
    train: List[str]
    val: List[str]
    test: List[str]
    y: np.ndarray              # 1 = anomaly
    note: str = ""


_PUNCT = str.maketrans(string.punctuation, " " * len(string.punctuation))


def clean_text(text: str) -> str:
    """CVDD's/DATE's cleaning: lower case, punctuation to spaces, digits out, stop words and words of fewer
    than three letters out (scikit-learn's English stop words)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    t = re.sub(r"\d+", "", str(text).lower().translate(_PUNCT))
    return " ".join(w for w in t.split() if len(w) >= 3 and w not in ENGLISH_STOP_WORDS)


def _hold_out_val(rows: List[str], rng: np.random.Generator, share: float = 0.1):
    idx = rng.permutation(len(rows))
    k = max(1, int(round(share * len(rows))))
    return [rows[i] for i in idx[k:]], [rows[i] for i in idx[:k]]


def _take(rows: List, n: Optional[int], rng: np.random.Generator) -> List:
    if n is None or len(rows) <= n:
        return list(rows)
    return [rows[i] for i in sorted(rng.choice(len(rows), n, replace=False))]


def _stratified(labels: np.ndarray, n: Optional[int], rng: np.random.Generator) -> np.ndarray:
    """Indices of a seeded subsample of about n rows keeping each label's share."""
    if n is None or len(labels) <= n:
        return np.arange(len(labels))
    keep = []
    for lab in np.unique(labels):
        ix = np.flatnonzero(labels == lab)
        k = max(1, int(round(n * len(ix) / len(labels))))
        keep.append(rng.choice(ix, min(k, len(ix)), replace=False))
    return np.sort(np.concatenate(keep))


def splits_20ng(train_rows: Optional[int], test_rows: Optional[int], seed: int) -> List[Split]:
    path = DATA / "20newsgroups" / "20news-bydate.csv.gz"
    csv.field_size_limit(2 ** 31 - 1)             # a few posts are longer than csv's default field limit
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    top = {g: t for t, gs in GROUPS_20NG.items() for g in gs}
    docs = {"train": [], "test": []}
    for r in rows:
        c = clean_text(r["text"])
        if c:                                   # CVDD drops documents left empty
            docs[r["split"]].append((top[r["group"]], c))
    out = []
    for k, name in enumerate(GROUPS_20NG):
        rng = np.random.default_rng(seed + k)
        train = _take([t for g, t in docs["train"] if g == name], train_rows, rng)
        train, val = _hold_out_val(train, rng)
        labels = np.array([g for g, _ in docs["test"]])
        ix = _stratified(labels, test_rows, rng)
        test = [docs["test"][i][1] for i in ix]
        y = (labels[ix] != name).astype(int)
        out.append(Split("20ng", name, train, val, test, y))
    return out


def splits_ag(train_rows: Optional[int], test_rows: Optional[int], seed: int) -> List[Split]:
    import pandas as pd

    df = pd.read_csv(DATA / "ag_news" / "test.csv")
    df.columns = ["label", "title", "description"]
    df["text"] = (df.title.astype(str) + " " + df.description.astype(str)).map(clean_text)
    df = df[df.text.str.len() > 0]
    rng0 = np.random.default_rng(seed)
    half = np.zeros(len(df), dtype=bool)               # the training half of each class, fixed for all splits
    for lab in AG_CLASSES:
        ix = np.flatnonzero(df.label.to_numpy() == lab)
        half[rng0.choice(ix, len(ix) // 2, replace=False)] = True
    test_df = df[~half]
    out = []
    for k, (lab, name) in enumerate(AG_CLASSES.items()):
        rng = np.random.default_rng(seed + k)
        train = _take(df[half & (df.label == lab).to_numpy()].text.tolist(), train_rows, rng)
        train, val = _hold_out_val(train, rng)
        labels = test_df.label.to_numpy()
        ix = _stratified(labels, test_rows, rng)
        out.append(Split("ag_news", name, train, val, test_df.text.iloc[ix].tolist(),
                         (labels[ix] != lab).astype(int), "test.csv halves"))
    return out


def _labelled_split(set_name: str, name: str, texts: List[str], anomaly: np.ndarray, seed: int,
                    train_rows: Optional[int], test_rows: Optional[int]) -> Split:
    """A seeded half of the rows trains on its usual rows; the other half (both labels) is the test set."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(texts))
    a, b = perm[: len(texts) // 2], perm[len(texts) // 2:]
    train = _take([texts[i] for i in a if not anomaly[i]], train_rows, rng)
    train, val = _hold_out_val(train, rng)
    ix = b[_stratified(anomaly[b], test_rows, rng)]
    return Split(set_name, name, train, val, [texts[i] for i in ix], anomaly[ix].astype(int))


def splits_sms(train_rows: Optional[int], test_rows: Optional[int], seed: int) -> List[Split]:
    labels, texts = [], []
    with open(DATA / "sms_spam" / "SMSSpamCollection.tsv", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            lab, _, text = line.rstrip("\n").partition("\t")
            if i == 0 and lab == "label":
                continue
            labels.append(lab)
            texts.append(text)
    ham = [t for t, lab in zip(texts, labels) if lab == "ham"]
    spam = [t for t, lab in zip(texts, labels) if lab == "spam"]
    # Text-ADBench's split: test = all spam + the first len(spam) ham rows; train = the other ham rows.
    rng = np.random.default_rng(seed)
    train, val = _hold_out_val(_take(ham[len(spam):], train_rows, rng), rng)
    test = spam + ham[: len(spam)]
    y = np.r_[np.ones(len(spam), int), np.zeros(len(spam), int)]
    return [Split("sms_spam", "ham", train, val, test, y, "Text-ADBench split")]


def splits_bgl(train_rows: Optional[int], test_rows: Optional[int], seed: int) -> List[Split]:
    import pandas as pd

    df = pd.read_csv(DATA / "bgl" / "BGL_2k.log_structured.csv")
    return [_labelled_split("bgl", "non-alert", df.Content.astype(str).tolist(), (df.Label != "-").to_numpy(),
                            seed, train_rows, test_rows)]


def splits_youtube(train_rows: Optional[int], test_rows: Optional[int], seed: int) -> List[Split]:
    import pandas as pd

    files = sorted((DATA / "youtube_spam").glob("Youtube0*.csv"))
    df = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    return [_labelled_split("youtube_spam", "ham", df.CONTENT.astype(str).tolist(), (df.CLASS == 1).to_numpy(),
                            seed, train_rows, test_rows)]


LOADERS: Dict[str, Callable[..., List[Split]]] = {
    "20ng": splits_20ng, "ag_news": splits_ag, "sms_spam": splits_sms, "bgl": splits_bgl,
    "youtube_spam": splits_youtube,
}
FIRST_FILE = {
    "20ng": "20newsgroups/20news-bydate.csv.gz", "ag_news": "ag_news/test.csv",
    "sms_spam": "sms_spam/SMSSpamCollection.tsv", "bgl": "bgl/BGL_2k.log_structured.csv",
    "youtube_spam": "youtube_spam/Youtube01-Psy.csv",
}


# ---------------------------------------------------------------------------------------------- signals

def project_default(model, texts: List[str]) -> np.ndarray:
    """What the project writes for a row through its public API (higher = more unusual): ``COL_unusual``
    where ``score_frame`` writes one (the analysis layer of issue 22), else ``log COL_ppl``."""
    import pandas as pd

    df = pd.DataFrame({"text": texts})
    lm.score_frame(model, df, "text", top=0)
    if "text_unusual" in df.columns:
        return df["text_unusual"].to_numpy(dtype=np.float64)
    return np.log(df["text_ppl"].to_numpy(dtype=np.float64))


def knn_distance(train_x, test_x, k: int = 5, block: int = 512) -> np.ndarray:
    """Mean cosine distance of each test row to its k nearest training rows (rows l2-normalised), in blocks
    of test rows so that memory stays bounded."""
    out = np.empty(test_x.shape[0])
    tt = train_x.T.tocsc() if hasattr(train_x, "tocsc") else train_x.T
    k = min(k, train_x.shape[0])
    for a in range(0, test_x.shape[0], block):
        sim = test_x[a:a + block] @ tt
        sim = sim.toarray() if hasattr(sim, "toarray") else np.asarray(sim)
        top = -np.partition(-sim, k - 1, axis=1)[:, :k]
        out[a:a + block] = 1.0 - top.mean(axis=1)
    return out


SIGNALS = ("ppl", "max", "topk", "unseen", "ngram", "knn")
COMBOS = ("cal_mean6", "cal_max", "cal_fisher")
BASELINES = ("tfidf_word_knn", "tfidf_word_iforest", "tfidf_word_ocsvm",
             "tfidf_char_knn", "tfidf_char_iforest", "tfidf_char_ocsvm")


def project_signals(model, texts: List[str]) -> Dict[str, np.ndarray]:
    """The model's own signals (``model.signals``: what ``COL_unusual`` combines), each alone, and other
    combinations of them over the model's own calibration: the mean percentile of all six (the default
    leaves ``topk`` out), the largest percentile, and Fisher-style pooling (sum of -log2(1 - p))."""
    sig = model.signals(texts, progress=False)
    out = {name: np.asarray(sig[name], dtype=np.float64) for name in SIGNALS if name in sig}
    cal = model.unusualness.calibration if model.unusualness is not None else None
    if cal is not None:
        used = [n for n in SIGNALS if n in cal.signals and n in out]
        pct = np.vstack([np.nan_to_num(cal.percentile(n, out[n]), nan=0.5) for n in used])
        tail = np.vstack([np.nan_to_num(cal.tail_bits(n, out[n]), nan=1.0) for n in used])
        out["cal_mean6"] = pct.mean(axis=0)
        out["cal_max"] = pct.max(axis=0) + 1e-6 * pct.mean(axis=0)    # the mean breaks ties among saturated rows
        out["cal_fisher"] = tail.sum(axis=0)
        for n, p, t in zip(used, pct, tail):
            out[f"pct_{n}"], out[f"tail_{n}"] = p, t
    return out


def sklearn_baselines(train: List[str], test: List[str], seed: int) -> Dict[str, np.ndarray]:
    from sklearn.ensemble import IsolationForest
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import OneClassSVM

    out = {}
    for kind, vec in (("word", TfidfVectorizer(sublinear_tf=True)),
                      ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True,
                                               max_features=200_000))):
        xtr = vec.fit_transform(train)
        xte = vec.transform(test)
        out[f"tfidf_{kind}_knn"] = knn_distance(xtr, xte)
        iso = IsolationForest(n_estimators=100, random_state=seed).fit(xtr)
        out[f"tfidf_{kind}_iforest"] = -iso.score_samples(xte)
        svm = OneClassSVM(kernel="rbf", gamma="scale", nu=0.1).fit(xtr)
        out[f"tfidf_{kind}_ocsvm"] = -svm.decision_function(xte)
    return out


# ------------------------------------------------------------------------------------------------- runs

@dataclass
class Result:
    split: Split
    auroc: Dict[str, float] = field(default_factory=dict)
    auprc: Dict[str, float] = field(default_factory=dict)
    train_s: float = 0.0
    score_s: float = 0.0
    base_s: float = 0.0
    val_ppl: float = float("nan")


def run_split(sp: Split, seed: int, max_time: Optional[float], save: Optional[Path] = None,
              set_name: str = "") -> Result:
    res = Result(sp)
    t0 = time.perf_counter()
    opts = {"seed": seed}
    if max_time:
        opts["max_time"] = max_time
    model = lm.train(sp.train, val_data=sp.val, **opts)
    res.train_s = time.perf_counter() - t0
    res.val_ppl = float(model.meta.get("val_ppl") or float("nan"))

    t0 = time.perf_counter()
    scores: Dict[str, np.ndarray] = {"default": project_default(model, sp.test)}
    res.score_s = time.perf_counter() - t0
    scores.update(project_signals(model, sp.test))

    t0 = time.perf_counter()
    scores.update(sklearn_baselines(sp.train + sp.val, sp.test, seed))
    res.base_s = time.perf_counter() - t0
    if save is not None:
        # Everything needed to weigh another combination rule without training again.
        save.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(save / f"{set_name}__{sp.name}.npz", y=np.asarray(sp.y),
                            **{k: np.asarray(v, dtype=np.float64) for k, v in scores.items()})
    for name, s in scores.items():
        if name.startswith(("pct_", "tail_")):
            continue
        res.auroc[name] = auroc(s, sp.y)          # a row that could not be scored (NaN) is not flagged
        res.auprc[name] = auprc(s, sp.y)
    return res


METHODS = ("default",) + SIGNALS + COMBOS + BASELINES


def print_set(set_name: str, results: List[Result]) -> None:
    cols = [r.split.name for r in results]
    print(f"\n## {set_name}: AUROC / AUPRC per usual class" + (f" ({results[0].split.note})" if results[0].split.note else ""))
    for r in results:
        sp = r.split
        print(f"  {sp.name}: train {len(sp.train)} rows (+{len(sp.val)} val), test {len(sp.test)} rows, "
              f"{int(sp.y.sum())} anomalies ({sp.y.mean():.1%}); val ppl {r.val_ppl:.1f}; "
              f"train {r.train_s:.0f}s, scoring (score_frame) {r.score_s:.0f}s, sklearn {r.base_s:.0f}s")
    w = max(len(c) for c in cols + ["mean"]) + 1
    w = max(w, 7)                               # a cell is 0.000/0.000: 11 characters and a space
    header = f"{'method':<20}" + "".join(f"{c:>{w + 6}}" for c in cols) + (f"{'mean':>{w + 6}}" if len(cols) > 1 else "")
    print(header)
    for m in METHODS:
        cells = [f"{r.auroc[m]:.3f}/{r.auprc[m]:.3f}" for r in results]
        line = f"{m:<20}" + "".join(f"{c:>{w + 6}}" for c in cells)
        if len(cols) > 1:
            line += f"{np.mean([r.auroc[m] for r in results]):.3f}/{np.mean([r.auprc[m] for r in results]):.3f}".rjust(w + 6)
        print(line)


def summary(all_results: Dict[str, List[Result]]) -> None:
    sets = list(all_results)
    print("\n## Summary: mean AUROC per set (20ng and ag_news: mean over their one-class splits)")
    print(f"{'method':<20}" + "".join(f"{s:>14}" for s in sets) + f"{'mean':>10}")
    means = {m: [float(np.mean([r.auroc[m] for r in all_results[s]])) for s in sets] for m in METHODS}
    for m in METHODS:
        print(f"{m:<20}" + "".join(f"{v:>14.3f}" for v in means[m]) + f"{np.mean(means[m]):>10.3f}")
    best_signal = {s: max(means[m][i] for m in SIGNALS) for i, s in enumerate(sets)}
    best_base = {s: max(means[m][i] for m in BASELINES) for i, s in enumerate(sets)}
    print("\nWithin 0.005 of the best single signal / of the best sklearn baseline (per set, by mean AUROC):")
    for m in ("default",) + COMBOS:
        ok_sig = sum(means[m][i] >= best_signal[s] - 0.005 for i, s in enumerate(sets))
        ok_base = sum(means[m][i] >= best_base[s] - 0.005 for i, s in enumerate(sets))
        print(f"  {m:<12} {ok_sig}/{len(sets)} sets vs best signal, {ok_base}/{len(sets)} vs best baseline; "
              f"mean AUROC {np.mean(means[m]):.3f}")
    for i, s in enumerate(sets):
        win = max(METHODS, key=lambda m: means[m][i])
        print(f"  best on {s}: {win} {means[win][i]:.3f} (best signal {best_signal[s]:.3f}, "
              f"best baseline {best_base[s]:.3f})")


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of: {', '.join(SETS)}")
    ap.add_argument("--quick", action="store_true",
                    help="smaller subsamples (400 training, 600 test rows) and max_time 20 s per split")
    ap.add_argument("--train-rows", type=int, default=None, help="usual rows to train on per split (default 1000)")
    ap.add_argument("--test-rows", type=int, default=None, help="test rows per split (default 1000)")
    ap.add_argument("--max-time", type=float, default=None,
                    help="seconds of LSTM training per split (default 0: the project's own default, its time "
                         "budget, what a user gets)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", type=Path, default=None,
                    help="a folder for each split's labels, scores and calibrated signals (.npz), to weigh "
                         "other combination rules without training again")
    a = ap.parse_args(argv)
    train_rows = a.train_rows or (400 if a.quick else 1000)
    test_rows = a.test_rows or (600 if a.quick else 1000)
    max_time = a.max_time if a.max_time is not None else (20.0 if a.quick else 0.0)
    wanted = [s.strip() for s in a.sets.split(",") if s.strip()]
    bad = [s for s in wanted if s not in SETS]
    if bad:
        sys.exit(f"Unknown set(s) {', '.join(bad)}; choose from {', '.join(SETS)}.")
    print(f"# benchmarks.anomaly | {machine_line()}")
    print(f"# seed {a.seed}; up to {train_rows} training rows and {test_rows} test rows per split (seeded "
          f"subsamples); LSTM: project defaults with max_time={max_time or 'default'}; data: {DATA}")
    all_results: Dict[str, List[Result]] = {}
    t_all = time.perf_counter()
    for s in wanted:
        if not (DATA / FIRST_FILE[s]).exists():
            print(f"\n## {s}: skipped, {DATA / FIRST_FILE[s]} not found. Put {HOW_TO_GET[s]} under {DATA} "
                  f"(or set LM_MAGICS_SHARED to the folder holding data/).")
            continue
        t0 = time.perf_counter()
        results = []
        try:                                    # one set that fails must not cost the others' figures
            for sp in LOADERS[s](train_rows, test_rows, a.seed):
                results.append(run_split(sp, a.seed, max_time or None, a.save, s))
                print(f"  .. {s}/{sp.name} done ({time.perf_counter() - t0:.0f}s so far)", flush=True)
        except Exception as exc:                # noqa: BLE001 - reported, and the run goes on
            print(f"\n## {s}: failed after {time.perf_counter() - t0:.0f}s: {type(exc).__name__}: {exc}", flush=True)
            continue
        all_results[s] = results
        print_set(s, results)
        print(f"  ({s}: {time.perf_counter() - t0:.0f}s in all)", flush=True)
    if all_results:
        summary(all_results)
    print(f"\n# total {time.perf_counter() - t_all:.0f}s")


if __name__ == "__main__":
    main()
