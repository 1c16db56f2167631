"""Tokenizer: levels, punctuation, unicode, vocabulary limits, specials, natural decoding, serialization."""

from __future__ import annotations

import pytest

from lm_magics.engine.tokenizer import EOS, SPECIALS, UNK, Tokenizer


def test_word_level_splits_punctuation_numbers_and_clitics():
    tok = Tokenizer()
    assert tok.tokenize("The cat's bowl, isn't it; 3.14 (yes)!") == [
        "The", "cat", "'s", "bowl", ",", "isn", "'t", "it", ";", "3", ".", "14", "(", "yes", ")", "!"]


def test_whitespace_level_splits_on_whitespace_only():
    tok = Tokenizer(level="whitespace")
    assert tok.tokenize("the cat 's  bowl\t, @-@ x") == ["the", "cat", "'s", "bowl", ",", "@-@", "x"]


def test_char_level_keeps_spaces_and_drops_newlines():
    tok = Tokenizer(level="char")
    assert tok.tokenize("ab c\nd") == ["a", "b", " ", "c", "d"]
    tok.fit(["ab c"])
    assert tok.decode(tok.encode("ab c\nab")) == "ab c\nab"


def test_unknown_level_is_refused():
    with pytest.raises(ValueError, match="level"):
        Tokenizer(level="bpe")


@pytest.mark.parametrize("text, tokens", [
    ("café naïve Ångström", ["café", "naïve", "Ångström"]),
    ("東京は晴れ", ["東京は晴れ"]),                     # no spaces in CJK: one chunk, but it survives whole
    ("I 😀 emoji 👍🏽", ["I", "😀", "emoji", "👍🏽"]),     # skin-tone modifier stays with its emoji
    ("e\u0301te", ["e\u0301te"]),                      # combining accent stays with its letter
    ("Привет, мир", ["Привет", ",", "мир"]),
    ("हिन्दी भाषा", ["हिन्दी", "भाषा"]),                   # vowel signs are not \w: still one word
])
def test_unicode_survives(text, tokens):
    tok = Tokenizer()
    assert tok.tokenize(text) == tokens
    tok.fit([text])
    assert tok.tokenize(tok.decode(tok.encode(text))) == tokens
    assert UNK not in [tok.itos[i] for i in tok.encode(text)]


def test_lowercase():
    tok = Tokenizer(lowercase=True).fit(["The Cat", "the cat the"])
    assert tok.tokenize("The CAT") == ["the", "cat"]
    assert "The" not in tok.stoi and tok.stoi["the"] == 2  # most frequent word right after the specials
    assert tok.encode("THE Cat") == tok.encode("the cat")


def test_vocabulary_is_frequency_ordered_with_specials_first():
    tok = Tokenizer().fit(["b a a c b a"])
    assert tok.itos[:2] == list(SPECIALS)
    assert tok.itos[2:] == ["a", "b", "c"]
    assert len(tok) == 5 and tok.fitted


def test_min_freq_and_max_vocab():
    lines = ["a a a b b c"]
    assert Tokenizer(min_freq=2).fit(lines).itos == [UNK, EOS, "a", "b"]
    assert Tokenizer(max_vocab=3).fit(lines).itos == [UNK, EOS, "a"]
    tok = Tokenizer(min_freq=3).fit(lines)
    assert [tok.itos[i] for i in tok.encode("a b c zebra")] == ["a", UNK, UNK, UNK]


def test_max_vocab_caps_many_distinct_words():
    tok = Tokenizer(max_vocab=100).fit([" ".join(f"w{i}" for i in range(5000))])
    assert len(tok) == 100


def test_unk_and_eos():
    tok = Tokenizer().fit(["the cat"])
    ids = tok.encode("the dog\nthe cat", eos=True)
    assert [tok.itos[i] for i in ids] == ["the", UNK, EOS, "the", "cat", EOS]
    assert tok.encode("the cat") == [tok.stoi["the"], tok.stoi["cat"]]   # no <eos> after the last line
    assert tok.encode_line("the") == [tok.stoi["the"], tok.eos_id]
    # A literal <unk> in text (WikiText style) is the unknown token, not three tokens.
    assert tok.tokenize("a <unk> b") == ["a", "<unk>", "b"]
    assert tok.encode("<unk>") == [tok.unk_id]


@pytest.mark.parametrize("tokens, text", [
    (["the", "cat", "'s", "bowl", "."], "the cat's bowl."),
    (["hello", ",", "world", ";", "ok", ":", "yes", "!", "no", "?"], "hello, world; ok: yes! no?"),
    (["(", "a", ")", "[", "b", "]"], "(a) [b]"),
    (["3", ".", "14", "and", "1", ",", "000"], "3.14 and 1,000"),
    (["end", ".", "14"], "end. 14"),
    (["well", "-", "known", "and", "/", "or"], "well-known and/or"),
    (["isn", "'t"], "isn't"),
])
def test_decode_joins_naturally(tokens, text):
    tok = Tokenizer().fit([" ".join(tokens)])
    assert tok.decode([tok.stoi[t] for t in tokens]) == text
    assert tok.join(tokens) == text


def test_decode_specials():
    tok = Tokenizer().fit(["a b"])
    ids = [tok.stoi["a"], tok.unk_id, tok.eos_id, tok.stoi["b"]]
    assert tok.decode(ids) == "a <unk>\nb"
    assert tok.decode(ids, skip_special=True) == "ab"


def test_round_trip_at_token_level():
    text = 'He said: "don\'t go!" (twice) -- and 3.5% of us\' cats\' bowls, 東京 😀.'
    tok = Tokenizer().fit([text])
    assert tok.tokenize(tok.decode(tok.encode(text))) == tok.tokenize(text)
    assert tok.tokenize(tok.join(tok.tokenize(text))) == tok.tokenize(text)


def test_to_dict_from_dict():
    tok = Tokenizer(level="word", lowercase=True, min_freq=2, max_vocab=10).fit(["A a b b c"])
    d = tok.to_dict()
    assert set(d) == {"level", "lowercase", "min_freq", "max_vocab", "itos"}
    assert all(isinstance(v, (str, bool, int, list)) for v in d.values())   # plain data only
    tok2 = Tokenizer.from_dict(d)
    assert tok2.itos == tok.itos and tok2.lowercase and tok2.min_freq == 2 and tok2.max_vocab == 10
    assert tok2.encode("a b c") == tok.encode("a b c")


def test_encode_lines_streams_int32_arrays():
    tok = Tokenizer().fit(["a b"])
    arrays = list(tok.encode_lines(["a b"] * 40_000))
    assert len(arrays) >= 2 and all(a.dtype.name == "int32" for a in arrays)
    assert sum(a.size for a in arrays) == 3 * 40_000


def test_large_text_tokenizes_in_one_pass():
    # Speed sanity, not timed: 200k words of Zipf-like text go through count + encode with the memo.
    words = [f"w{i % 997}" for i in range(200_000)]
    lines = [" ".join(words[i:i + 20]) + "." for i in range(0, len(words), 20)]
    tok = Tokenizer()
    tok.build(tok.count(lines))
    total = sum(a.size for a in tok.encode_lines(lines))
    assert total == 200_000 + 2 * len(lines)   # every word, its '.', and <eos>
    assert len(tok) == 997 + 1 + len(SPECIALS)
