"""The assistant that explores a text column: column references, /data, /unusual, /explain, /compare,
/learn, /stop, hints for plain messages, the line to copy into a cell; lm.explain, lm.compare_groups and
their magics (%lm_explain, %lm_compare). Tiny seeded data and models; properties, never float digits."""

from __future__ import annotations

import random
import re

import pytest

pd = pytest.importorskip("pandas", reason="DataFrame columns need the pandas extra (the test extra has it)")
pytest.importorskip("ipywidgets", reason="the widgets need the widgets extra: pip install 'lm-magics[widgets]' (the test extra has it)")

import lm_magics as lm  # noqa: E402
from lm_magics.display import DataOverview, Explanation, GroupComparison  # noqa: E402
from lm_magics.errors import ConfigError, DataError  # noqa: E402
from lm_magics.frames import parse_column_ref, ref_text, resolve_column, text_overview  # noqa: E402
from lm_magics.registry import ModelRegistry  # noqa: E402
from lm_magics.widgets import ChatAssistant  # noqa: E402
from lm_magics.widgets.monitor import TrainingMonitor  # noqa: E402
from conftest import wait_until

WORDS = "the a cat dog sat ran on mat log park".split()


def make_reviews(seed: int = 0, per_group: int = 20) -> "pd.DataFrame":
    """Three products of seeded reviews; 'toys' reviews say 'zap zip'; one product has a single row."""
    rng = random.Random(seed)
    rows = []
    for product in ("toys", "books", "garden"):
        for _ in range(per_group):
            words = [rng.choice(WORDS) for _ in range(6)] + (["zap", "zip"] if product == "toys" else [])
            rows.append((product, " ".join(words), rng.randint(1, 5)))
    rows.append(("solo", "one lonely row", 3))
    df = pd.DataFrame(rows, columns=["product", "text", "stars"])
    df["review text"] = df["text"]
    return df


@pytest.fixture(scope="module")
def model():
    return lm.train("\n".join(make_reviews(1).text), epochs=2, hidden_dim=16, embed_dim=8, seed=0)


@pytest.fixture
def reg(model):
    r = ModelRegistry()
    r.set("pets", model)
    return r


@pytest.fixture
def ns():
    return {"reviews": make_reviews(), "texts": ["the cat sat", "a dog ran"], "n": 3,
            "s": pd.Series(["the cat", None, "a dog ran on"])}


@pytest.fixture
def chat(reg, ns):
    c = ChatAssistant("pets", registry=reg, user_ns=ns, seed=0)
    yield c
    for m in c.trainings:          # never leave a training thread behind
        m.stop()
        m.join(30)
    c.close()


def last(chat):
    return chat.messages[-1]


# ------------------------------------------------------------------------------------ column references

def test_column_references_survive_dots_and_spaces(ns):
    assert parse_column_ref("reviews.text top 3") == ("reviews", "text", "top 3")
    assert parse_column_ref('reviews["review text"] by product') == ("reviews", "review text", "by product")
    assert parse_column_ref("reviews['a.b'] x") == ("reviews", "a.b", "x")
    assert parse_column_ref("df.text.clean") == ("df", "text.clean", "")     # dots after the first: the column
    assert parse_column_ref("texts") == ("texts", None, "")
    assert ref_text("reviews", "text") == "reviews.text"
    assert ref_text("reviews", "review text") == 'reviews["review text"]'
    ref = resolve_column(ns, 'reviews["review text"]')
    assert ref.column == "review text" and list(ref.values) == list(ns["reviews"]["review text"])
    assert str(ref) == 'reviews["review text"]'
    assert resolve_column(ns, "texts").values == ns["texts"]


@pytest.mark.parametrize("ref, message", [
    ("review.text", "No variable named 'review' in the notebook. Did you mean 'reviews'?"),
    ("reviews.txt", "'reviews' has no column 'txt'. Did you mean reviews.text"),
    ("reviews.stars", "Column 'stars' of 'reviews' holds int values, not text. Text columns:"),
    ("reviews", "'reviews' is a DataFrame; name one of its columns, e.g. reviews.text (text columns: 'text', 'review text')"),
    ("reviews.review text", 'for a column name with spaces write reviews["review text"]'),
    ("n.text", "'n' is a int, which has no columns"),
    ("n", "'n' is a int, not a DataFrame, Series or list of str"),
    ("3abc", "Name a column like reviews.text"),
])
def test_column_reference_mistakes_say_what_to_write(ns, ref, message):
    with pytest.raises(DataError) as err:
        resolve_column(ns, ref)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_text_overview_lists_text_columns_with_rows_missing_and_words(ns):
    ns = dict(ns, numbers=pd.DataFrame({"x": [1, 2]}), _hidden=pd.Series(["a"]))
    entries = {(d["var"], d["column"]): d for d in text_overview(ns)}
    assert ("reviews", "text") in entries and ("reviews", "review text") in entries
    assert ("reviews", "stars") not in entries and ("n", None) not in entries
    assert not any(var == "_hidden" for var, _ in entries)
    assert entries[("numbers", None)].get("missing") is None           # a frame without text is listed as such
    s = entries[("s", None)]
    assert (s["rows"], s["missing"], s["mean_words"]) == (3, 1, 3.0)
    assert entries[("reviews", "text")]["mean_words"] > entries[("reviews", "product")]["mean_words"]
    text = repr(DataOverview(list(entries.values())))
    assert "reviews.text" in text and 'reviews["review text"]' in text and "no text columns" in text
    # labels (few distinct short values) and times are listed apart, below the text columns
    assert entries[("reviews", "product")]["role"] == "label" and entries[("reviews", "text")]["role"] == "text"
    table, labels = text.split("\nLabels (few distinct short values, not text to model): ")
    assert "reviews.product" not in table and labels.startswith("reviews.product (4 values)")
    ns["tweets"] = pd.DataFrame({"text": [f"row {i} says something long enough" for i in range(20)],
                                 "created": [f"2015-02-{10 + i} 11:35:52 -0800" for i in range(20)],
                                 "at": pd.date_range("2020-01-01", periods=20)})
    text = repr(DataOverview(text_overview(ns)))
    assert text.endswith("\nDates and times: tweets.created, tweets.at") and "tweets.text" in text


# ------------------------------------------------------------------------------------ the chat

def test_data_lists_the_notebooks_text(chat):
    chat.send("/data")
    msg = last(chat)
    assert msg["role"] == "system" and "reviews.text" in msg["text"] and "texts" in msg["text"]
    assert "<table class='lm-data'" in chat.history.children[-1].value


def test_unusual_scores_a_column_and_replaces_only_its_own_columns(chat, ns):
    df = ns["reviews"]
    chat.send("/unusual reviews.text top 2")
    msg = last(chat)
    assert msg["role"] == "system", msg["text"]
    assert {"text_ppl", "text_bits", "text_ngram_ppl", "text_mix_ppl"} <= set(df.columns)
    # the columns exist now: the line replaces them, so pasted into a cell it runs as given
    assert msg["code"] == "%lm_score --df reviews --column text --name pets --overwrite --top 2 --baseline"
    assert msg["text"].endswith(msg["code"]) and "Most unusual" in msg["text"] and "why:" in msg["text"]
    assert "text_unusual" in df.columns
    assert "rank agreement with the model" in msg["text"] and "n-gram" in msg["text"]   # the baseline beside it
    # the lone row with words the model never saw is the most surprising one
    assert df["text_ppl"].idxmax() == df.index[-1]
    html = chat.history.children[-1].value
    assert "class='lm-copy'" in html and "navigator.clipboard" in html and "lm-score-report" in html
    first = df["text_ppl"].copy()
    chat.send("/unusual reviews.text top 2")             # again: its own columns are replaced
    assert last(chat)["code"].endswith("--overwrite --top 2 --baseline")
    assert list(df.columns).count("text_ppl") == 1 and df["text_ppl"].equals(first)
    # a column of the user's is never replaced: the scores go next to it
    df["review text_ppl"] = 1.0
    chat.send('/unusual reviews["review text"] top 1')
    assert (df["review text_ppl"] == 1.0).all() and "review text_2_ppl" in df.columns
    assert '--into "review text_2_ppl"' in last(chat)["code"] and "is your column" in last(chat)["text"]
    # ... nor one named like the baseline's column
    df["title"], df["title_ngram_ppl"] = df["text"], 2.0
    chat.send("/unusual reviews.title top 1")
    assert (df["title_ngram_ppl"] == 2.0).all() and {"title_2_ppl", "title_2_ngram_ppl"} <= set(df.columns)


def test_unusual_with_another_model(chat, reg, model):
    reg.set("other", model, make_default=False)
    chat.send("/unusual reviews.text with other top 1")
    assert last(chat)["code"] == "%lm_score --df reviews --column text --name other --overwrite --top 1 --baseline"
    assert chat.name == "pets"
    # a model without a baseline: its own scores alone, and no claim about one
    bare = lm.train("\n".join(make_reviews(1).text), epochs=1, hidden_dim=16, embed_dim=8, seed=0, baseline=False)
    reg.set("bare", bare, make_default=False)
    chat.send("/unusual reviews.text with bare top 1")
    assert last(chat)["code"].endswith("--top 1") and "n-gram" not in last(chat)["text"]


@pytest.mark.parametrize("command, message", [
    ("/unusual", "Name a column: /unusual COLUMN"),
    ("/unusual revews.text", "Did you mean 'reviews'?"),
    ("/unusual reviews.stars", "holds int values, not text"),
    ("/unusual reviews.txt", "Did you mean reviews.text"),
    ("/unusual reviews.review text", 'needs brackets: reviews["review text"]'),
    ("/unusual reviews.text top many", "top N needs a whole number"),
    ("/unusual reviews.text top 0", "top must be at least 1"),
    ("/unusual reviews.text sideways", "Did not understand 'sideways'"),
    ("/unusual reviews.text with nope", "No model named 'nope'"),
    ("/unusual s", "name a DataFrame column"),
    ("/explain", "Give the text to explain"),
    ("/compare reviews.text", "Say which column holds the groups"),
    ("/compare reviews.text by prodct", "'reviews' has no column 'prodct'. Did you mean reviews.product?"),
    ("/compare reviews.stars by product", "holds int values, not text"),
    ("/compare reviews.text by product min 50", "Only 0 group(s) of 'product' have at least 50 rows"),
    ("/compare texts by product", "/compare needs a DataFrame"),
    ("/learn", "Say what to learn from"),
    ("/learn revews.text", "No variable named 'revews' in the notebook. Did you mean 'reviews'?"),
    ("/learn reviews.stars", "holds int values, not text"),
    ("/learn reviews.text where nonsense ==", "Cannot filter 'reviews'"),
    ("/learn reviews.text where stars > 9", "keeps no rows"),
    ("/learn no_such_dir/*.txt", "No file matches"),
])
def test_chat_command_mistakes_are_one_line_errors(chat, command, message):
    chat.send(command)
    msg = last(chat)
    assert msg["role"] == "error" and message in msg["text"], msg["text"]
    assert "\n" not in msg["text"]


def test_explain_shades_words_and_names_alternatives(chat):
    chat.send("/explain the cat sat on the zap")
    msg = last(chat)
    assert msg["role"] == "system" and msg["code"] == "%lm_explain --name pets -k 3 the cat sat on the zap"
    assert "'zap'" in msg["text"] and "expected:" in msg["text"]
    html = chat.history.children[-1].value
    assert "lm-explain" in html and "bits'" in html and html.count("<li>") == 3


def test_compare_finds_the_odd_group_and_its_words(chat):
    chat.send("/compare reviews.text by product")
    msg = last(chat)
    assert msg["role"] == "system" and msg["code"] == "%lm_compare --df reviews --column text --by product"
    assert "word counts of the column" in msg["text"]             # says which model it used
    assert "too small to compare (under 5 rows): solo (1)" in msg["text"]   # a group with one row
    lines = msg["text"].splitlines()
    assert lines[1].split()[0] == "toys" and "zap" in lines[1] and "zip" in lines[1]
    html = chat.history.children[-1].value
    assert "<svg class='lm-bars'" in html and "lm-compare-table" in html
    chat.send("/compare reviews.text by product with pets min 2")
    assert last(chat)["code"].endswith("--by product --name pets --min-rows 2")
    assert "with 'pets'" in last(chat)["text"]
    # the model's n-gram baseline beside its figures: a column per group and a line on their agreement
    assert "(n-gram " in last(chat)["text"].splitlines()[1] and "rank agreement" in last(chat)["text"]
    assert "n-gram vs rest" in chat.history.children[-1].value


def test_a_plain_message_is_continued_and_may_get_a_hint(chat):
    chat.send("show me the unusual rows in reviews.text")
    roles = [m["role"] for m in chat.messages]
    assert roles == ["user", "assistant", "system"]
    assert last(chat)["text"].startswith("Looks like a request for a command: /unusual reviews.text")
    assert "continuing your text" in chat.history.children[1].value
    for text, hint in [('compare reviews["review text"] by product', '/compare reviews["review text"] by product'),
                       ("please learn from reviews.text", "/learn reviews.text"),
                       ("which dataframes do I have?", "/data"),
                       ("explain the cat sat", "/explain the cat sat")]:
        chat.send(text)
        assert hint in last(chat)["text"], text
    n = len(chat.messages)
    chat.send("the cat sat on the mat")            # no command asked for: no hint
    assert len(chat.messages) == n + 2 and chat.messages[-1]["role"] == "assistant"


# ------------------------------------------------------------------------------------ /learn

LONG = ["epochs 400", "patience 1000"]


def test_learn_trains_in_the_background_and_stops_from_the_chat(chat, reg, monkeypatch):
    import lm_magics.widgets.monitor as monitor

    real = monitor.start_background_training

    def long_run(**kw):        # a run long enough to be stopped (options a user cannot pass to /learn)
        kw["options"] = dict(epochs=400, patience=1000, hidden_dim=8, embed_dim=8, seed=0)
        return real(**kw)

    monkeypatch.setattr(monitor, "start_background_training", long_run)
    chat.send("/learn reviews.text where stars > 2 as happy")
    i = 1                                                          # yours, then the answer
    msg = chat.messages[i]
    assert msg["role"] == "system", msg["text"]
    assert msg["code"] == '%lm_train --name happy --df reviews --column text --where "stars > 2" --background'
    mon = chat.trainings[0]
    assert isinstance(mon, TrainingMonitor) and mon.name == "happy"
    bubble = chat.history.children[i]
    assert mon.widget in bubble.children                         # the monitor lives in the conversation
    assert wait_until(lambda: mon.step is not None)
    # the message says the plan as soon as the first steps are timed, and the time elapsed and left
    assert wait_until(lambda: "plan" in msg and "left" in bubble.children[0].value)
    assert re.fullmatch(r"about [\d.]+ (s|min)( \d+ s)?, [\d,]+ steps|about .*epochs?.*", msg["plan"]), msg["plan"]
    assert f"\nPlan: {msg['plan']}; /stop to end early.\n" in msg["text"]
    assert re.search(r"\d:\d\d elapsed, about \d+:\d\d left", bubble.children[0].value)
    assert "lm-anchor" not in bubble.children[0].value            # a redraw never moves the reader's view
    chat.send("/data")                                               # the kernel stays usable meanwhile
    assert last(chat)["role"] == "system"
    chat.send("/stop")
    assert "Stopping 'happy'" in last(chat)["text"]
    assert mon.join(30)
    assert wait_until(lambda: "Training stopped" in last(chat)["text"])
    # Stopped before its first validation, the run is kept aside as happy_interrupted (registry.register_run).
    got = "happy" if mon.model.report.history else "happy_interrupted"
    assert f"'{got}' is registered" in last(chat)["text"] and f"/use {got}" in last(chat)["text"]
    assert re.search(r"ended after [\d.]+ s", bubble.children[0].value)
    assert reg.get(got) is mon.model and mon.model.interrupted
    chat.send("/stop")
    assert last(chat)["text"] == "Nothing started here is running."


def test_learn_a_stopped_run_never_replaces_a_model_of_its_name(chat, reg, model, monkeypatch):
    import lm_magics.widgets.monitor as monitor

    real = monitor.start_background_training
    monkeypatch.setattr(monitor, "start_background_training", lambda **kw: real(**dict(
        kw, options=dict(epochs=400, patience=1000, hidden_dim=8, embed_dim=8, seed=0))))
    chat.send("/learn reviews.text as pets")
    mon = chat.trainings[0]
    assert wait_until(lambda: mon.step is not None)
    mon.stop_button.click()
    assert mon.join(30) and wait_until(lambda: "Training stopped" in last(chat)["text"])
    assert reg.get("pets") is model and reg.get("pets_interrupted") is mon.model
    assert "kept the earlier 'pets'" in last(chat)["text"]


def test_learn_from_files(chat, reg, tmp_path):
    (tmp_path / "notes.txt").write_text("the cat sat on the mat\nthe dog sat on the log\n" * 5)
    chat.send(f"/learn {tmp_path}/*.txt")
    msg = last(chat)
    assert msg["role"] == "system" and "on 1 file" in msg["text"]
    assert msg["code"] == f"%lm_train --name notes --file {tmp_path}/*.txt --background"
    assert chat.trainings[0].join(60)
    assert wait_until(lambda: "Training finished" in last(chat)["text"] or "Training stopped" in last(chat)["text"])
    assert "notes" in reg


# ------------------------------------------------------------------------------------ polars

def test_polars_frames_in_data_compare_and_learn(chat, ns, monkeypatch):
    pl = pytest.importorskip("polars", reason="polars is optional (the test extra installs it)")
    df = make_reviews()
    ns["plr"] = pl.DataFrame({"product": df["product"].tolist(), "text": df["text"].tolist(),
                              "stars": df["stars"].tolist()})
    chat.send("/data")
    assert "plr.text" in last(chat)["text"] and "polars.DataFrame" in last(chat)["text"]
    chat.send("/compare plr.text by product")
    assert last(chat)["role"] == "system" and last(chat)["text"].splitlines()[1].split()[0] == "toys"
    chat.send("/unusual plr.text")
    assert last(chat)["role"] == "error" and "plr.to_pandas()" in last(chat)["text"]
    chat.send("/unusual plr.stars")
    assert last(chat)["role"] == "error" and "not text" in last(chat)["text"]


# ------------------------------------------------------------------------------------ API and magics

def test_compare_groups_api(model):
    df = make_reviews()
    result = lm.compare_groups(df, "text", "product")
    assert isinstance(result, GroupComparison)
    assert list(result.table.columns) == ["rows", "bits", "rest_bits", "excess_bits", "words", "word_z"]
    assert result.table.index[0] == "toys" and result.table.index.name == "product"
    assert result.table.loc["toys", "words"][:2] in (["zap", "zip"], ["zip", "zap"])
    assert result.too_small == {"solo": 1} and result.table["rows"].sum() == 60
    assert (result.table["excess_bits"].diff().dropna() <= 0).all()          # most unusual first
    with_model = lm.compare_groups(df, "text", "product", model, model_name="pets", min_rows=1)
    assert "solo" in with_model.table.index and with_model.model_name == "'pets'"
    assert "ngram_excess_bits" in with_model.table.columns and with_model.has_baseline
    assert with_model.table["ngram_excess_bits"].notna().all() and -1 <= with_model.agreement <= 1
    assert not result.has_baseline and "n-gram" not in repr(result)      # no model, no baseline to show
    html = result._repr_html_()
    assert "<svg class='lm-bars'" in html and "toys" in html
    df.loc[0, "product"] = None                                          # rows without a group are left out
    assert lm.compare_groups(df, "text", "product").skipped == 1
    with pytest.raises(DataError, match="no column 'nope'"):
        lm.compare_groups(df, "text", "nope")
    with pytest.raises(DataError, match="another column than the text"):
        lm.compare_groups(df, "text", "text")
    with pytest.raises(ConfigError, match="min_rows"):
        lm.compare_groups(df, "text", "product", min_rows=0)


def test_explain_api(model):
    result = lm.explain(model, "the cat sat on the zap", top=2, k=4)
    assert isinstance(result, Explanation) and [w for w, _ in result.words][-1] == "zap"
    assert len(result.alternatives) == 2 and all(len(a[3]) == 4 for a in result.alternatives)
    top_pos = max(range(len(result.words)), key=lambda i: result.words[i][1])
    assert result.alternatives[0][0] == top_pos
    with pytest.raises(DataError):
        lm.explain(model, "   ")
    with pytest.raises(ConfigError):
        lm.explain(model, "the cat", top=0)


@pytest.fixture
def shell(model):
    from IPython.core.interactiveshell import InteractiveShell

    from lm_magics.registry import get_registry

    sh = InteractiveShell.instance()
    sh.run_line_magic("load_ext", "lm_magics")
    get_registry(sh).set("assist_pets", model)
    sh.user_ns["assist_reviews"] = make_reviews()
    yield sh
    get_registry(sh).drop("assist_pets")
    sh.user_ns.pop("assist_reviews", None)


def test_lm_compare_and_lm_explain_magics(shell):
    from IPython.core.error import UsageError

    r = shell.run_line_magic("lm_compare", "--df assist_reviews --column text --by product -o assist_cmp")
    assert isinstance(r, GroupComparison) and shell.user_ns.pop("assist_cmp") is r and r.table.index[0] == "toys"
    r = shell.run_line_magic("lm_compare", "--df assist_reviews --column text --by product --name assist_pets "
                                           "--min-rows 1 --top-words 2")
    assert "solo" in r.table.index and all(len(w) <= 2 for w in r.table["words"])
    for line, message in [("--df nope --column text --by product", "No variable named 'nope'"),
                          ("--df assist_reviews --column text --by prodct", "Did you mean 'product'"),
                          ("--df assist_reviews --column stars --by product", "not text"),
                          ("--df assist_reviews --column text", "--by"),
                          ("--df assist_reviews --column text --by product --name nope", "No model named 'nope'")]:
        with pytest.raises(UsageError, match=message):
            shell.run_line_magic("lm_compare", line)
    e = shell.run_line_magic("lm_explain", "--name assist_pets -k 2 the cat sat on the zap")
    assert isinstance(e, Explanation) and all(len(a[3]) == 2 for a in e.alternatives)
    with pytest.raises(UsageError, match="Give a text to explain"):
        shell.run_line_magic("lm_explain", "--name assist_pets")


def test_every_offered_line_reruns_as_given_twice_in_a_real_shell(model):
    # What the chat offers to paste into a cell does what the chat did (same columns, same scores, same
    # groups, same words), right after the answer and again later: each line runs twice.
    from IPython.core.interactiveshell import InteractiveShell

    from lm_magics.registry import get_registry

    import numpy as np

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "lm_magics")
    reg = get_registry(shell)
    reg.set("copied_pets", model)
    columns = ["text_ppl", "text_bits", "text_ngram_ppl", "text_mix_ppl"]
    try:
        shell.user_ns["copied"] = make_reviews()
        chat = ChatAssistant("copied_pets", registry=reg, user_ns=shell.user_ns, seed=0)
        for command in ["/unusual copied.text top 2", "/unusual copied.text top 2", "/compare copied.text by product",
                        "/compare copied.text by product with copied_pets min 2", "/explain the cat sat on the zap",
                        "/score the cat sat on the zap", "/next the cat", "/next 'quoted'", "/next -5 degrees",
                        "/learn copied.text where stars > 2 as copied_learned"]:
            chat.send(command)
            msg = last(chat)
            assert msg["role"] == "system" and msg["code"].startswith("%lm_"), (command, msg["text"])
            magic, _, line = msg["code"][1:].partition(" ")
            by_chat = shell.user_ns["copied"][columns].copy() if command.startswith("/unusual") else None
            for _ in range(2):
                result = shell.run_line_magic(magic, line)
                if command.startswith("/learn"):         # it starts (the run itself is /learn's own test)
                    assert isinstance(result, TrainingMonitor) and result.name == "copied_learned"
                    assert len(result.data) == (shell.user_ns["copied"]["stars"] > 2).sum()
                    for mon in (result, *chat.trainings):
                        mon.stop()
                        assert mon.join(30)
                elif command.startswith("/unusual"):
                    again = shell.user_ns["copied"][columns]
                    assert np.allclose(again.to_numpy(), by_chat.to_numpy(), rtol=1e-6, equal_nan=True)
                    assert list(shell.user_ns["copied"].columns).count("text_ppl") == 1
                elif command.startswith("/compare"):
                    assert repr(result).splitlines()[1:4] == msg["text"].splitlines()[1:4]   # the same groups
                elif command.startswith("/explain"):
                    assert repr(result) == msg["text"].rsplit("\n", 1)[0]
                elif command.startswith("/score"):
                    head, worst = msg["text"].split("\n")[0].split("; most surprising: ")
                    assert head == f"perplexity {2 ** result.bits:,.1f}"
                    assert [w.split(" (")[0] for w in worst.split(", ")] == [w for _, w, _, _ in result.alternatives]
                else:
                    said = msg["text"].split(": ", 1)[1].split("\n")[0]
                    assert [w for w in result.words] == [w for w, _ in chat.model.next_words(
                        command[6:], chat.k)] and result.prefix == command[6:], (said, result.prefix)
        chat.close()
    finally:
        reg.drop("copied_pets")
        for name in ("copied_learned", "copied_learned_interrupted"):
            if name in reg:
                reg.drop(name)


def _held_scoring(monkeypatch):
    """Make every scoring pass wait for the returned event (at most 10 s) before its first chunk."""
    import threading

    from lm_magics import api

    gate = threading.Event()
    real = api.LanguageModel._row_mean_nll

    def slow(self, texts, progress=True, on_chunk=None):
        def held(done, total):
            gate.wait(10)
            if on_chunk is not None:
                on_chunk(done, total)
        return real(self, texts, progress, held)

    monkeypatch.setattr(api.LanguageModel, "_row_mean_nll", slow)
    return gate


def test_long_unusual_runs_in_the_background_with_progress_and_stop(chat, ns, monkeypatch):
    # A command estimated to take seconds says so at once, scores in a thread with a progress bar, the time
    # elapsed and left and a Stop button; the kernel is free meanwhile; Stop writes nothing.
    import ipywidgets as W

    from lm_magics import api
    from lm_magics.assistant import answers

    df = ns["reviews"]
    monkeypatch.setattr(answers, "estimate_seconds", lambda model, texts, passes=1: 40.0)
    monkeypatch.setattr(api, "_SCORE_CHUNK_ROWS", 7)              # several chunks for a few dozen rows
    gate = _held_scoring(monkeypatch)
    chat.send("/unusual reviews.text top 2")
    # before any row is scored: the message with the estimate, the bar and Stop
    msg = last(chat)
    assert msg["text"].startswith("Scoring 61 rows of reviews.text, about 40 s… Stop (or /stop) keeps the data")
    progress = chat.history.children[-1]
    bar, stop, count = progress.children[1].children
    assert isinstance(bar, W.FloatProgress) and stop.description == "Stop" and not stop.disabled
    assert re.fullmatch(r"0:\d\d elapsed, about 0:[0-4]\d left", count.value) and len(chat.jobs) == 1
    assert chat.send("the cat") is not None                     # the kernel (and the chat) answer meanwhile
    gate.set()
    assert wait_until(lambda: not chat.jobs and last(chat).get("code")), last(chat)
    assert "text_ppl" in df.columns and last(chat)["code"].startswith("%lm_score --df reviews")
    assert bar.value == 1.0 and stop.disabled and count.value.startswith("done in ")

    for how in ("button", "/stop"):
        fresh = make_reviews()
        ns["fresh"] = fresh
        gate.clear()
        chat.send("/unusual fresh.text")
        stop = chat.history.children[-1].children[1].children[1]
        if how == "button":
            stop.click()
        else:
            chat.send("/stop")
            assert last(chat)["text"] == "Stopping: Scoring 61 rows of fresh.text; nothing is written."
        gate.set()
        assert wait_until(lambda: not chat.jobs and "; nothing was written." in last(chat)["text"]), how
        assert last(chat)["text"].startswith("Scoring 61 rows of fresh.text: stopped after ")
        assert list(fresh.columns) == list(make_reviews().columns), how     # the frame is as it was
        assert stop.disabled
    assert chat.send("the cat") is not None                       # and the chat answers as before


def test_a_quick_unusual_runs_inline_and_the_estimate_grows_with_rows_and_passes(chat, ns, model, monkeypatch):
    from lm_magics.assistant import answers

    monkeypatch.setattr(answers, "estimate_seconds", lambda model, texts, passes=1: 0.5)
    chat.send("/unusual reviews.text top 1")
    assert not chat.jobs and last(chat)["code"].startswith("%lm_score")       # answered at once
    monkeypatch.undo()
    texts = list(make_reviews().text)
    one = answers.estimate_seconds(model, texts)
    assert one > 0 and answers.estimate_seconds(model, texts * 4) == pytest.approx(4 * one, rel=0.3)
    assert answers.estimate_seconds(model, texts, passes=2) == pytest.approx(2 * one, rel=0.3)
    assert answers.estimate_seconds(model, [None, "  "]) == 0.0


def test_long_compare_with_a_model_runs_in_the_background(chat, ns, monkeypatch):
    from lm_magics.assistant import answers

    monkeypatch.setattr(answers, "estimate_seconds", lambda model, texts, passes=1: 32.0)
    chat.send("/compare reviews.text by product with pets")
    assert last(chat)["text"].startswith("Comparing groups of reviews.text (61 rows), about 32 s…")
    assert wait_until(lambda: not chat.jobs and last(chat).get("code")), last(chat)
    assert last(chat)["code"] == "%lm_compare --df reviews --column text --by product --name pets"
    assert "3 groups compared" in last(chat)["text"]
