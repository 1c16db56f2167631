"""The chat's assistant without its widget (lm_magics.assistant): the grammar of messages and the answers
that compute, used as plain Python, and the magic lines written from the magics' own parsers."""

from __future__ import annotations

import pytest

pd = pytest.importorskip("pandas", reason="DataFrame columns need the pandas extra (the test extra has it)")

from IPython.utils.process import arg_split  # noqa: E402

from lm_magics.assistant import answers, grammar  # noqa: E402
from lm_magics.errors import ConfigError, DataError  # noqa: E402
from lm_magics.magics import LMMagics  # noqa: E402


@pytest.fixture
def ns():
    df = pd.DataFrame({"text": [f"the cat sat on mat {i % 7}" for i in range(30)],
                       "product": ["toys", "books", "garden"] * 10, "stars": list(range(30))})
    df["review text"] = df["text"]
    return {"reviews": df, "texts": ["the cat sat", "a dog ran"]}


# ------------------------------------------------------------------------------------------ grammar

def test_commands_and_help_agree():
    assert set(grammar.COMMANDS) == {c.split()[0][1:] for c, _, _ in grammar.HELP_ROWS}
    assert grammar.split_command("/Unusual  reviews.text top 3 ") == ("unusual", "reviews.text top 3")
    assert grammar.split_command("/help") == ("help", "")
    with pytest.raises(ConfigError, match=r"Unknown command /bogus; type /help"):
        grammar.split_command("/bogus x")
    assert grammar.HELP.splitlines()[-1] == grammar.PLAIN


@pytest.mark.parametrize("value, written", [("text", "text"), ("review text", '"review text"'),
                                            ("label == 'ham'", "\"label == 'ham'\""),
                                            ("a \"b\" 'c'", "'a \"b\" '\"'\"'c'\"'\"''")])
def test_quote_writes_arguments_as_a_person_would(value, written):
    assert grammar.quote(value) == written
    assert arg_split(written, posix=True) == [value]


def test_column_and_options(ns):
    ref, opts = grammar.column_and_options(ns, 'reviews["review text"] with pets top 3', "usage",
                                           {"with": str, "top": int})
    assert (ref.var, ref.column, opts) == ("reviews", "review text", {"with": "pets", "top": 3})
    for arg, message in [("", "Name a column: usage"), ("reviews.text top", "Did not understand 'top'"),
                         ("reviews.text top x", "top N needs a whole number"),
                         ("reviews.review text top 1", 'needs brackets: reviews["review text"]'),
                         ("revews.text top 1", "Did you mean 'reviews'")]:
        with pytest.raises((ConfigError, DataError), match=message.replace("[", r"\[").replace("]", r"\]")):
            grammar.column_and_options(ns, arg, "usage", {"top": int})


def test_learn_request_from_a_column_or_files(ns, tmp_path):
    r = grammar.learn_request(ns, "reviews.text where stars > 19 as happy")
    assert (r.name, r.rows, r.source) == ("happy", 10, {"df": "reviews", "column": "text", "where": "stars > 19"})
    assert r.what == "reviews.text (10 rows, where stars > 19)" and list(r.data) == list(ns["reviews"].text[20:])
    assert grammar.learn_request(ns, "texts").name == "texts"
    (tmp_path / "notes.txt").write_text("the cat\n")
    r = grammar.learn_request(ns, f"{tmp_path}/*.txt")
    assert (r.name, r.source, r.what) == ("notes", {"file": [f"{tmp_path}/*.txt"]}, "1 file")
    with pytest.raises(DataError, match=r"No variable named 'revews'.*No file 'revews.text' either"):
        grammar.learn_request(ns, "revews.text")


def test_hints(ns):
    assert grammar.hint("show me the unusual rows in reviews.text", ns) == "/unusual reviews.text"
    assert grammar.hint('compare reviews["review text"] by product', ns) == '/compare reviews["review text"] by product'
    assert grammar.hint("why the cat sat", ns) == "/explain the cat sat"
    assert grammar.hint("the cat sat on the mat", ns) is None


# ------------------------------------------------------------------------------------------ magic lines

@pytest.mark.parametrize("magic, options, text", [
    ("lm_score", {"df": "reviews", "column": "review text", "name": "pets", "into": "t_2_ppl", "overwrite": True,
                  "top": 2, "baseline": True}, ""),
    ("lm_compare", {"df": "reviews", "column": "text", "by": "product line", "name": "pets", "min_rows": 2}, ""),
    ("lm_explain", {"name": "pets", "top": 4, "k": 3}, "the cat's \"hat\""),
    ("lm_complete", {"name": "pets", "k": 4}, "-5 degrees"),
    ("lm_complete", {"name": "pets", "k": 4}, "'quoted'"),
    ("lm_train", {"name": "happy", "df": "reviews", "column": "text", "where": "label == 'ham'",
                  "background": True, "epochs": 3, "lowercase": True}, ""),
    ("lm_train", {"name": "notes", "file": ["a b/*.txt", "c.txt"], "background": True}, ""),
])
def test_magic_lines_parse_back_to_the_options(magic, options, text):
    line = answers.magic_line(magic, options, text)
    assert line.startswith(f"%{magic} ")
    shell_like = LMMagics(shell=None)
    fn = getattr(shell_like, magic)
    if text:
        opts, rest = __import__("lm_magics.magics", fromlist=["_split_options"])._split_options(
            fn.parser, line[len(magic) + 2:])
        assert rest == text
    else:
        opts = line[len(magic) + 2:]
    args = fn.parser.parse_args(arg_split(opts, posix=True))
    for key, value in options.items():
        assert getattr(args, key) == value, key


def test_magic_lines_refuse_an_option_the_magic_lacks():
    with pytest.raises(ValueError, match="%lm_score has no option 'bogus'"):
        answers.magic_line("lm_score", {"bogus": 1})
    with pytest.raises(ValueError, match="No magic %lm_nope"):
        answers.magic_line("lm_nope", {})
    assert answers.magic_line("lm_score", {"df": "d", "column": "c", "into": None, "overwrite": False}) == \
        "%lm_score --df d --column c"


# ------------------------------------------------------------------------------------------ answers

def test_answers_without_a_widget(ns, tiny_model):
    def model_for(name):
        return (name or "pets"), tiny_model

    work = answers.unusual(ns, "reviews.text top 2", model_for, lambda frame: set())
    assert work.title == "Scoring 30 rows of reviews.text" and work.rows == 30 and work.seconds > 0
    answer = work.run(None)
    assert answer.code == "%lm_score --df reviews --column text --name pets --overwrite --top 2 --baseline"
    assert answer.wrote[0] is ns["reviews"] and "text_ppl" in answer.wrote[1] and "text_ppl" in ns["reviews"]
    assert "Most surprising" in answer.text and "lm-score-report" in answer.html
    # a second run replaces the columns it wrote (own), and never a column of the user's
    again = answers.unusual(ns, "reviews.text top 2", model_for, lambda frame: set(answer.wrote[1])).run(None)
    assert again.wrote[1] == answer.wrote[1]
    mine = answers.unusual(ns, "reviews.text top 2", model_for, lambda frame: set()).run(None)
    assert mine.wrote[1][0] == "text_2_ppl" and "--into text_2_ppl" in mine.code

    compare = answers.compare(ns, "reviews.text by product", model_for)
    assert compare.seconds == 0 and compare.run(None).code == "%lm_compare --df reviews --column text --by product"
    assert answers.compare(ns, "reviews.text by product with pets", model_for).seconds > 0
    nxt = answers.next_words(tiny_model, "pets", "the cat", 3)
    assert nxt.code == "%lm_complete --name pets -k 3 the cat" and nxt.text.startswith("after 'the cat': ")
    assert answers.next_words(tiny_model, None, "the cat", 3).code == "model.next_words('the cat', k=3)"
    score = answers.score_text(tiny_model, "pets", "the cat sat", 2)
    assert score.code == "%lm_explain --name pets --top 2 -k 2 the cat sat"
    assert score.text.startswith(f"perplexity {2 ** score.result.bits:,.1f}; most surprising: ")
    overview = answers.data(ns)
    assert "reviews.text" in overview.text and "Labels" in overview.text and "<table class='lm-data'" in overview.html


def test_time_lines():
    assert answers.work_line(12, 40, None) == "0:12 elapsed, about 0:28 left"
    assert answers.work_line(12, 40, 0.5) == "50% · 0:12 elapsed, about 0:12 left"
    assert answers.work_line(50, 40, None) == "0:50 elapsed, a little longer than estimated"
    assert answers.duration(40) == "40 s" and answers.duration(130) == "2 min 10 s"
    from lm_magics.engine.training import StepInfo

    step = StepInfo(step=10, total_steps=100, epoch=1, loss=5.0, lr=0.1, tokens=1000, tokens_per_s=100.0,
                    elapsed=5.0)
    assert answers.progress_line(6.0, step) == "0:06 elapsed, about 0:45 left"
    assert answers.progress_line(6.0) == "0:06 elapsed"
    assert answers.plan_line(None, step) == "about 50 s, 100 steps"
    assert answers.plan_line({"seconds": 50.0, "epochs": 8}) == "about 50 s, 8 epochs"
    assert answers.plan_line() == ""


def test_the_estimate_learns_from_a_long_run(tiny_model, monkeypatch):
    from lm_magics.api import LanguageModel

    model = LanguageModel(tiny_model.net, tiny_model.tokenizer, tiny_model.config, tiny_model.meta)
    texts = ["the cat sat on the mat"] * 200
    first = answers.estimate_seconds(model, texts)
    answers.record_time(model, first, 0.5)                       # under a second: too short to learn from
    assert answers.estimate_seconds(model, texts) == first
    answers.record_time(model, 2.0, 6.0)                         # three times slower than said
    assert answers.estimate_seconds(model, texts) == pytest.approx(3 * first)
    answers.record_time(model, 3 * first, 1e6)                   # never more than 8 times the measure
    assert answers.estimate_seconds(model, texts) == pytest.approx(8 * first)
    answers.record_time(None, 1.0, 2.0)                          # no model: nothing to learn
