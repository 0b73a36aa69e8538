"""sacreBLEU wrappers: corpus scores and BLEU by source-length bucket."""

import pytest
import sacrebleu

from seq2seq_lit.metrics import bleu_by_source_length, corpus_scores


def test_corpus_scores_match_sacrebleu_and_give_the_signature():
    hyps, refs = ["the cat sat on the mat .", "a dog runs"], ["the cat sat on a mat .", "a dog is running"]
    scores, signature = corpus_scores(hyps, refs)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert "tok:13a" in signature and "case:mixed" in signature
    with pytest.raises(ValueError, match="2 hypotheses for 1 references"):
        corpus_scores(hyps, refs[:1])


def test_bleu_by_source_length_scores_each_bucket_separately():
    short_src, long_src = "ein kurzer satz", " ".join(["wort"] * 25)
    sources = [short_src, short_src, long_src]
    refs = ["a short sentence here", "another short one here", "a long sentence with many words in it"]
    hyps = [refs[0], refs[1], "nothing alike at all"]
    buckets = bleu_by_source_length(sources, hyps, refs)
    assert set(buckets) == {"1-10", "21-30"}
    assert buckets["1-10"] == {"bleu": pytest.approx(100.0), "sentences": 2}
    assert buckets["21-30"]["bleu"] < 5 and buckets["21-30"]["sentences"] == 1
