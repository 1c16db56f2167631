"""How a probability, a token and a number read, the same in every view.

The training summary, ``%lm_complete``, ``%lm_explain`` / ``/explain``, ``/compare``, the chat and the panel
all format through these functions (text and HTML alike; HTML escapes their result), so a rule decided
here holds everywhere:

* a probability never reads "0%" or "100%" ("<1%" and ">99%" instead) unless it is a share that is
  exactly that;
* a punctuation token is quoted (“,”) so it can be seen, the end of a line reads "⏎ (end of line)" and the
  unknown-word token "<unk>";
* a number that rounds to zero never shows a minus sign ("-0.0 bits", "−0.00").

Plain string building, no imports from the rest of the package beyond the tokenizer's two token names.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Tuple

from .engine.tokenizer import EOS, UNK

__all__ = ["prob_text", "token_text", "word_text", "is_punct", "pairs_text", "num_text", "END_OF_LINE"]

END_OF_LINE = "⏎ (end of line)"     # how <eos> reads: the model expects the line (row) to end here


def prob_text(p: float, decimals: int = 0, exact: bool = False) -> str:
    """A probability as a percentage that never rounds to a misleading 0% or 100%.

    A model's probability is never exactly 0 or 1 (a float that reads 0.0 or 1.0 has run out of digits),
    so by default the extremes read "<1%" and ">99%" too; ``exact=True`` is for shares that can be exact
    (the one word that matches a stem has all of the matching words' probability: "100%").

    >>> prob_text(0.004), prob_text(0.42), prob_text(0.998), prob_text(1.0), prob_text(1.0, exact=True)
    ('<1%', '42%', '>99%', '>99%', '100%')
    >>> prob_text(0.0004, decimals=1), prob_text(0.9996, decimals=1)
    ('<0.1%', '>99.9%')
    """
    p = float(p)
    if not math.isfinite(p):
        return "n/a"
    if exact and (p <= 0.0 or p >= 1.0):
        return "0%" if p <= 0.0 else "100%"
    step = 10.0 ** -decimals               # the smallest step shown, in percent
    text = f"{100 * p:.{decimals}f}"
    if float(text) <= 0.0:
        return f"<{step:.{decimals}f}%"
    if float(text) >= 100.0:
        return f">{100 - step:.{decimals}f}%"
    return text + "%"


def is_punct(token: str) -> bool:
    """True for tokens without a letter or digit (",", ".", "--"); the special tokens are not punctuation."""
    return token not in (EOS, UNK) and not any(c.isalnum() for c in token)


def token_text(token: str) -> str:
    """A token as shown to a reader: punctuation in quotes (“,”), the end of a line visible, words as they are.

    >>> token_text("cat"), token_text(","), token_text("<eos>"), token_text("<unk>")
    ('cat', '“,”', '⏎ (end of line)', '<unk>')
    """
    if token == EOS:
        return END_OF_LINE
    return f"“{token}”" if is_punct(token) else token


word_text = token_text        # the name the widgets used first


def pairs_text(pairs: Iterable[Tuple[str, float]], decimals: int = 0) -> str:
    """(token, probability) pairs as one line: "cat 41%, “,” 12%, ⏎ (end of line) <1%" ("(none)" if empty)."""
    return ", ".join(f"{token_text(w)} {prob_text(p, decimals)}" for w, p in pairs) or "(none)"


def num_text(x: Optional[float], decimals: int = 1, sign: bool = False, width: int = 0) -> str:
    """x with ``decimals`` digits, never as negative zero ("-0.0" reads "0.0"); "n/a" for None, NaN, inf.

    ``sign=True`` writes "+" before a positive value (a difference), none before zero; ``width`` pads on
    the left, for columns.

    >>> num_text(-0.0001, 2), num_text(-0.0001, 2, sign=True), num_text(0.25, 2, sign=True), num_text(-1.5)
    ('0.00', '0.00', '+0.25', '-1.5')
    """
    if x is None or not math.isfinite(float(x)):
        return f"{'n/a':>{width}}"
    text = f"{float(x):{'+' if sign else ''}.{decimals}f}"
    if float(text) == 0.0:
        text = text.lstrip("+-")         # -0.00 and +0.00 both read 0.00
    return f"{text:>{width}}"
