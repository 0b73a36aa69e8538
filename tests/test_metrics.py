"""sacreBLEU wrappers: corpus scores and BLEU by source-length bucket."""

import pytest

from seq2seq_lit.metrics import bleu_by_source_length, bleu_signature, corpus_metrics


def test_the_bleu_signature_is_that_of_the_scores():
    hyps, refs = ["the cat sat on the mat .", "a dog runs"], ["the cat sat on a mat .", "a dog is running"]
    scores = corpus_metrics(hyps, refs, names=("bleu", "chrf"))
    assert set(scores) == {"bleu", "chrf"}
    assert scores["bleu"]["signature"] == bleu_signature()
    assert "tok:13a" in bleu_signature() and "case:mixed" in bleu_signature()


def test_bleu_by_source_length_scores_each_bucket_separately():
    short_src, long_src = "ein kurzer satz", " ".join(["wort"] * 25)
    sources = [short_src, short_src, long_src]
    refs = ["a short sentence here", "another short one here", "a long sentence with many words in it"]
    hyps = [refs[0], refs[1], "nothing alike at all"]
    buckets = bleu_by_source_length(sources, hyps, refs)
    assert set(buckets) == {"1-10", "21-30"}
    assert buckets["1-10"] == {"bleu": pytest.approx(100.0), "sentences": 2, "length_ratio": 1.0}
    assert buckets["21-30"]["bleu"] < 5 and buckets["21-30"]["sentences"] == 1
    assert buckets["21-30"]["length_ratio"] == pytest.approx(4 / 8)  # 4 words for a reference of 8: the brevity penalty
