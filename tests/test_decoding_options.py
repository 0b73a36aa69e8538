"""Sampling search, ensemble decoding and streaming translation, on the checkpoint of the small reverse-task run."""

from __future__ import annotations

import copy
import math
import os
import selectors
import subprocess
import sys

import pytest
import torch

from seq2seq_lit.data import Tokenizers, collate
from seq2seq_lit.errors import ConfigError, DataError
from seq2seq_lit.inference.checkpoints import load_checkpoint
from seq2seq_lit.inference.ensemble import Ensemble
from seq2seq_lit.inference.translation import translate_nbest
from seq2seq_lit.search import BeamSearch, GreedySearch, SampleSearch
from seq2seq_lit.search.sample import restrict

from .conftest import REPO, reverse_data_overrides, run_module


@pytest.fixture(scope="module")
def reverse_module(trained_reverse_run):
    _, metrics = trained_reverse_run
    return load_checkpoint(metrics["best_model_path"])


def test_restrict_keeps_the_top_k_and_the_nucleus():
    log_probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = lambda scores: scores.isfinite().squeeze(0).tolist()  # noqa: E731
    assert kept(restrict(log_probs, top_k=2)) == [True, True, False, False]
    assert kept(restrict(log_probs, top_p=0.8)) == [True, True, False, False]  # 0.5 + 0.3 reaches 0.8
    assert kept(restrict(log_probs, top_p=0.81)) == [True, True, True, False]
    assert kept(restrict(log_probs, top_p=0.1)) == [True, False, False, False]  # the most probable always stays
    flat = restrict(log_probs, temperature=1e6).softmax(-1)
    torch.testing.assert_close(flat, torch.full((1, 4), 0.25), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "setting, key",
    [({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"temperature": 0}, "temperature"), ({"top_k": -1}, "top_k"),
     ({"n_samples": 0}, "n_samples")],
)
def test_sampling_settings_out_of_range_name_the_key(setting, key):
    with pytest.raises(ConfigError, match=f"model.search.{key}="):
        SampleSearch(**setting)


def test_sampling_is_reproducible_with_a_seed_and_batched_like_greedy(reverse_module, reverse_corpus):
    lines = reverse_corpus["test_src"].read_text().splitlines()[:40]
    reverse_module.search = SampleSearch(n_samples=4, temperature=1.5, seed=7)
    first = translate_nbest(reverse_module, lines, batch_size=16)
    reverse_module.search = SampleSearch(n_samples=4, temperature=1.5, seed=7)
    again = translate_nbest(reverse_module, lines, batch_size=16)
    assert [[h.text for h in hyps] for hyps in first] == [[h.text for h in hyps] for hyps in again]
    for hyps in first:
        scores = [h.score for h in hyps]
        assert len(hyps) == 4 and scores == sorted(scores, reverse=True)
    assert len({h.text for hyps in first for h in hyps}) > len(lines)  # at temperature 1.5 the samples differ


def test_sampling_at_a_tiny_top_p_is_greedy(reverse_module, reverse_corpus):
    lines = reverse_corpus["test_src"].read_text().splitlines()[:40]
    reverse_module.search = GreedySearch()
    greedy = translate_nbest(reverse_module, lines, batch_size=16)
    reverse_module.search = SampleSearch(top_p=1e-6, n_samples=2)
    sampled = translate_nbest(reverse_module, lines, batch_size=16)
    for g, s in zip(greedy, sampled):
        assert [h.text for h in s] == [g[0].text] * 2
        assert s[0].score == pytest.approx(g[0].score, abs=1e-5)  # the model's log-probability of the same tokens


def perturbed(module, seed: int):
    other = copy.deepcopy(module)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in other.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    return other


def test_an_ensemble_steps_with_the_mean_of_the_models_log_probabilities(reverse_module, reverse_corpus):
    other = perturbed(reverse_module, 0)
    ensemble = Ensemble([reverse_module, other], ["a.ckpt", "b.ckpt"])
    lines = reverse_corpus["test_src"].read_text().splitlines()[:8]
    batch = collate([(i, ids, None) for i, ids in enumerate(reverse_module.tokenizers.src.encode_batch(lines))])
    inputs = [torch.full((len(lines),), reverse_module.hparams.bos_id), batch.src[:, 0], batch.src[:, 1]]

    def steps(model):  # (log-probabilities, weights) of each step over the same previous tokens
        with torch.no_grad():
            cache, state = model.encode(batch.src, batch.src_lengths)
            out = []
            for prev in inputs:
                log_probs, state, weights = model.decode_step(prev, state, cache)
                out.append((log_probs, weights))
        return out

    together, first, second = steps(ensemble.net), steps(reverse_module.net), steps(other.net)
    for (lp, w), (lp1, w1), (lp2, w2) in zip(together, first, second):
        assert not torch.allclose(lp1, lp2)  # two different models
        torch.testing.assert_close(lp, (lp1 + lp2) / 2)
        torch.testing.assert_close(w, (w1 + w2) / 2)


def test_an_ensemble_of_a_model_with_itself_decodes_as_the_model(reverse_module, reverse_corpus):
    lines = reverse_corpus["test_src"].read_text().splitlines()
    for search in (GreedySearch(), BeamSearch(beam_size=4, n_best=2, alpha=0.6)):
        reverse_module.search = search
        alone = translate_nbest(reverse_module, lines, batch_size=32)
        ensemble = Ensemble([reverse_module, copy.deepcopy(reverse_module)], ["a.ckpt", "b.ckpt"])
        together = translate_nbest(ensemble, lines, batch_size=32)
        assert [[h.text for h in hyps] for hyps in together] == [[h.text for h in hyps] for hyps in alone]
        torch.testing.assert_close(
            torch.tensor([h.score for hyps in together for h in hyps]), torch.tensor([h.score for hyps in alone for h in hyps])
        )


def test_an_ensemble_of_checkpoints_with_different_vocabularies_names_the_files(reverse_module, reverse_corpus):
    other = copy.deepcopy(reverse_module)
    tgt = other.tokenizers.tgt.restricted_to(["a b c"])
    object.__setattr__(other, "tokenizers", Tokenizers(src=other.tokenizers.src, tgt=tgt, joint=False))
    with pytest.raises(DataError, match=r"b.ckpt has a different target vocabulary .* than a.ckpt.*Fix"):
        Ensemble([reverse_module, other], ["a.ckpt", "b.ckpt"])


@pytest.mark.slow
def test_translate_and_evaluate_take_a_list_of_checkpoints(trained_reverse_run, reverse_corpus, tmp_path):
    _, metrics = trained_reverse_run
    ckpt = metrics["best_model_path"]
    alone = run_module("seq2seq_lit.translate", f"ckpt_path={ckpt}", stdin="a b c\nj i h\n")
    pair = run_module("seq2seq_lit.translate", f"ckpt_path=[{ckpt},{ckpt}]", "model/search=beam", stdin="a b c\nj i h\n")
    assert alone.returncode == pair.returncode == 0, pair.stderr[-2000:]
    assert pair.stdout == alone.stdout and len(pair.stdout.splitlines()) == 2
    scored = run_module(
        "seq2seq_lit.evaluate", f"ckpt_path=[{ckpt},{ckpt}]", *reverse_data_overrides(reverse_corpus),
        f"output_dir={tmp_path}",
    )
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert (tmp_path / "metrics.json").read_text().count(os.path.basename(ckpt)) == 2


@pytest.mark.slow
def test_stdin_lines_are_translated_as_they_arrive(trained_reverse_run):
    """A pipe that stays open: each output line comes back before the next input line is written."""
    _, metrics = trained_reverse_run
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "seq2seq_lit.translate", f"ckpt_path={metrics['best_model_path']}", "scores=true"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env,
    )
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    try:
        outputs = []
        for line in (b"a b c\n", b"\n", b"j i h g\n"):
            process.stdin.write(line)
            process.stdin.flush()
            assert selector.select(timeout=120), "no output line while stdin stays open"
            outputs.append(process.stdout.readline().decode())
        process.stdin.close()
        assert process.wait(timeout=60) == 0, process.stderr.read().decode()[-2000:]
    finally:
        process.kill()
    assert [o.split(" ||| ")[0] for o in outputs] == ["0", "1", "2"]  # n-best numbering continues across lines
    assert outputs[1] == "1 |||  ||| 0.0000\n"
    assert outputs[0].split(" ||| ")[1] == "c b a"
    assert math.isfinite(float(outputs[2].split(" ||| ")[2]))
