"""Attention score functions: normalization, masking, local windows, coverage, one-step == all-steps, and configs."""

import math
from functools import partial

import hydra
import pytest
import torch
from hydra.errors import MissingConfigException

from seq2seq_lit.errors import ConfigError
from seq2seq_lit.modules import (
    AdditiveAttention,
    ConcatAttention,
    CosineAttention,
    DotAttention,
    GeneralAttention,
    LocationAttention,
    MonotonicLocalAttention,
    MultiHeadAttention,
    NoAttention,
    PredictiveLocalAttention,
    ScaledDotAttention,
)
from seq2seq_lit.modules.attention import SCORES, build_score
from seq2seq_lit.modules.attention.catalogue import attention_factory, attention_names, markdown_table, write_page

from .conftest import REPO, compose_train

B, T, S, Q, K = 3, 5, 7, 6, 4
D = 2  # local window radius, small enough that the window excludes positions of a 7-token source

# every choice of model/attention as its YAML builds it, windows and heads sized for a 7-token source, and variants
TEST_OPTIONS = {"local_m": {"window": D}, "local_p": {"window": D}, "multihead": {"score": "additive", "heads": 3}}
ATTENTIONS = {name: attention_factory(name, **TEST_OPTIONS.get(name, {})) for name in attention_names()}
ATTENTIONS.update(
    additive_coverage=partial(AdditiveAttention, coverage=True),
    cosine_fixed=partial(CosineAttention, learn_sharpness=False),
    local_p_location=partial(PredictiveLocalAttention, score="location", window=D),
)
# the weights of these rows are a distribution over the source; local-p rescales them, none has no weights
NORMALIZED = [name for name in ATTENTIONS if not name.startswith("local_p") and name != "none"]
SQUARE = (DotAttention,)  # scores that need Q == K


def build(name: str, query_size: int = Q):
    factory = ATTENTIONS[name]
    cls = factory.func if isinstance(factory, partial) else factory
    torch.manual_seed(1)
    return factory(query_size=K if issubclass(cls, SQUARE) else query_size, key_size=K)


@pytest.fixture
def memory():
    """Keys ``(B, S, K)`` with sources of 7, 4 and 1 tokens, zeros on padding, and the padding mask."""
    torch.manual_seed(0)
    src_lengths = torch.tensor([7, 4, 1])
    src_pad_mask = torch.arange(S)[None, :] >= src_lengths[:, None]  # True on padding
    keys = torch.randn(B, S, K).masked_fill(src_pad_mask.unsqueeze(-1), 0.0)
    return keys, src_pad_mask


def queries(attention, steps: int = T):
    return torch.randn(B, steps, attention.query_size, generator=torch.Generator().manual_seed(2))


def on_padding(weights, src_pad_mask):
    return weights.masked_select(src_pad_mask.unsqueeze(1).expand_as(weights))


@pytest.mark.parametrize("name", NORMALIZED)
def test_weights_sum_to_one_and_are_zero_on_padding(name, memory):
    keys, src_pad_mask = memory
    attention = build(name)
    context, weights = attention(queries(attention), attention.prepare(keys, src_pad_mask))
    assert context.shape == (B, T, K) and weights.shape == (B, T, S)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, T))
    assert torch.all(on_padding(weights, src_pad_mask) == 0.0)
    assert torch.all(weights[2, :, 0] == 1.0)  # a one-token source gets all the attention


@pytest.mark.parametrize("name", list(ATTENTIONS))
def test_scoring_all_steps_equals_step_by_step(name, memory):
    keys, src_pad_mask = memory
    attention = build(name)
    query = queries(attention)
    cache = attention.prepare(keys, src_pad_mask)
    context, weights = attention(query, cache)
    for t in range(T):
        step_context, step_weights = attention(query[:, t : t + 1], cache, step=t)
        torch.testing.assert_close(step_context[:, 0], context[:, t])
        torch.testing.assert_close(step_weights[:, 0], weights[:, t])


@pytest.mark.parametrize("name", list(ATTENTIONS))
def test_padding_changes_nothing(name, memory):
    """Appending padded positions to the source leaves context and real weights unchanged."""
    keys, src_pad_mask = memory
    attention = build(name)
    query = queries(attention)
    context, weights = attention(query, attention.prepare(keys, src_pad_mask))
    keys2 = torch.cat([keys, torch.randn(B, 2, K)], dim=1)
    mask2 = torch.cat([src_pad_mask, torch.ones(B, 2, dtype=torch.bool)], dim=1)
    context2, weights2 = attention(query, attention.prepare(keys2, mask2))
    torch.testing.assert_close(context2, context)
    torch.testing.assert_close(weights2[..., :S], weights)
    assert torch.all(weights2[..., S:] == 0.0)


@pytest.mark.parametrize("name", [n for n in ATTENTIONS if n != "none"])
def test_gradients_reach_the_keys_and_every_parameter(name, memory):
    keys, src_pad_mask = memory
    keys = keys.clone().requires_grad_()
    attention = build(name)
    query = queries(attention).requires_grad_()
    context, _ = attention(query, attention.prepare(keys, src_pad_mask))
    context.square().sum().backward()
    assert keys.grad.abs().sum() > 0
    for param_name, param in attention.named_parameters():
        if "coverage" not in param_name:  # w_c only gets gradients once a coverage is passed
            assert param.grad is not None and param.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize("name", list(ATTENTIONS))
def test_cache_rows_can_be_selected_like_beams(name, memory):
    keys, src_pad_mask = memory
    attention = build(name)
    query = queries(attention)
    cache = attention.prepare(keys, src_pad_mask)
    index = torch.tensor([2, 0, 0, 1])
    context, weights = attention(query, cache)
    context_sel, weights_sel = attention(query[index], cache.index_select(index))
    torch.testing.assert_close(context_sel, context[index])
    torch.testing.assert_close(weights_sel, weights[index])


@pytest.mark.parametrize("name", list(ATTENTIONS))
def test_beams_sharing_a_cache_row_attend_as_with_copied_rows(name, memory):
    keys, src_pad_mask = memory
    attention = build(name)
    cache = attention.prepare(keys, src_pad_mask)
    beams, step = 3, 4
    query = torch.randn(B * beams, 1, attention.query_size, generator=torch.Generator().manual_seed(3))
    coverage = torch.rand(B * beams, S) if attention.coverage else None
    copied = cache.index_select(torch.arange(B).repeat_interleave(beams))
    shared = cache.repeat_interleave(beams)
    # local attention (window by step and source) and coverage cannot share rows; the others share without a copy
    assert (shared.group == beams) == (name not in ("additive_coverage", "local_m", "local_p", "local_p_location"))
    expected = attention(query, copied, step, coverage)
    torch.testing.assert_close(attention(query, shared, step, coverage), expected)
    # dropping the middle sentence and reordering the beams of the others (each beam stays with its sentence)
    rows = torch.tensor([2, 0, 1, 7, 7, 6])
    kept_coverage = None if coverage is None else coverage[rows]
    expected = attention(query[rows], copied.index_select(rows), step, kept_coverage)
    torch.testing.assert_close(attention(query[rows], shared.index_select(rows), step, kept_coverage), expected)


# -- score formulas ------------------------------------------------------------------------------------------------


def energy(attention, query, keys):
    return attention.score(query, attention.project_keys(keys))


def attend(attention, query, keys, src_pad_mask):
    return attention(query, attention.prepare(keys, src_pad_mask))


def test_general_energy_is_bilinear(memory):
    keys, _ = memory
    attention = GeneralAttention(query_size=Q, key_size=K)
    query = queries(attention)
    w_a = attention.key_layer.weight  # (Q, K)
    expected = torch.einsum("btq,qk,bsk->bts", query, w_a, keys)
    torch.testing.assert_close(energy(attention, query, keys), expected)


def test_general_with_identity_equals_dot(memory):
    keys, src_pad_mask = memory
    general, dot = GeneralAttention(query_size=K, key_size=K), DotAttention(query_size=K, key_size=K)
    with torch.no_grad():
        general.key_layer.weight.copy_(torch.eye(K))
    query = queries(dot)
    torch.testing.assert_close(attend(general, query, keys, src_pad_mask), attend(dot, query, keys, src_pad_mask))


def test_scaled_dot_is_dot_over_sqrt_key_size(memory):
    keys, src_pad_mask = memory
    scaled, dot = ScaledDotAttention(query_size=K, key_size=K), DotAttention(query_size=K, key_size=K)
    query = queries(dot)
    torch.testing.assert_close(energy(scaled, query, keys), energy(dot, query, keys) / math.sqrt(K))
    _, weights = attend(scaled, query, keys, src_pad_mask)
    masked = energy(dot, query, keys).masked_fill(src_pad_mask.unsqueeze(1), -math.inf)
    expected = torch.softmax(masked / math.sqrt(K), -1)
    torch.testing.assert_close(weights, expected)


def test_additive_energy_matches_formula(memory):
    keys, _ = memory
    attention = AdditiveAttention(query_size=Q, key_size=K, hidden_size=9)
    query = queries(attention)
    b, t, s = 1, 2, 3
    hidden = torch.tanh(attention.query_layer(query[b, t]) + attention.key_layer(keys[b, s]))
    torch.testing.assert_close(energy(attention, query, keys)[b, t, s], attention.energy_layer(hidden).squeeze())


def test_concat_is_the_additive_score_under_luongs_name(memory):
    keys, src_pad_mask = memory
    torch.manual_seed(3)
    concat = ConcatAttention(query_size=Q, key_size=K)
    additive = AdditiveAttention(query_size=Q, key_size=K)
    additive.load_state_dict(concat.state_dict())
    query = queries(concat)
    torch.testing.assert_close(attend(concat, query, keys, src_pad_mask), attend(additive, query, keys, src_pad_mask))


@pytest.mark.parametrize("query_size", [Q, K])
def test_cosine_energy_is_sharpness_times_cosine(query_size, memory):
    keys, _ = memory
    attention = CosineAttention(query_size=query_size, key_size=K, sharpness=3.0)
    with torch.no_grad():
        attention.log_gain.fill_(math.log(2.0))  # learned: beta = 3 * 2
    query = queries(attention)
    projected = attention.query_layer(query) if query_size != K else query
    expected = 6.0 * torch.nn.functional.cosine_similarity(projected.unsqueeze(2), keys[:, None, :2], dim=-1)
    torch.testing.assert_close(energy(attention, query, keys)[..., :2], expected)
    assert energy(attention, query, keys).abs().max() <= 6.0 + 1e-5


def test_fixed_cosine_sharpness_is_not_learned():
    fixed = CosineAttention(query_size=K, key_size=K, sharpness=4.0, learn_sharpness=False)
    assert fixed.sharpness == 4.0 and len(list(fixed.parameters())) == 0
    projecting = CosineAttention(query_size=Q, key_size=K, learn_sharpness=False)
    assert [name for name, _ in projecting.named_parameters()] == ["query_layer.weight"]


def test_location_energy_reads_only_the_query(memory):
    keys, src_pad_mask = memory
    attention = LocationAttention(query_size=Q, key_size=K, max_source_length=10)
    query = queries(attention)
    torch.testing.assert_close(energy(attention, query, keys), attention.energy_layer(query)[..., :S])
    _, weights = attention(query, attention.prepare(keys, src_pad_mask))
    _, weights_other_keys = attention(query, attention.prepare(torch.randn(B, S, K), src_pad_mask))
    torch.testing.assert_close(weights_other_keys, weights)


def test_multihead_averages_the_heads_and_projects_their_contexts(memory):
    keys, src_pad_mask = memory
    attention = build("multihead")
    query = queries(attention)
    context, weights = attend(attention, query, keys, src_pad_mask)
    heads = [attend(head, query, keys, src_pad_mask) for head in attention.heads]
    torch.testing.assert_close(weights, torch.stack([w for _, w in heads]).mean(0))
    torch.testing.assert_close(context, attention.output_layer(torch.cat([c for c, _ in heads], -1)))
    assert not torch.allclose(heads[0][1], heads[1][1])  # heads have their own parameters


def test_no_attention_gives_an_empty_context_and_zero_weights(memory):
    keys, src_pad_mask = memory
    attention = NoAttention(query_size=Q, key_size=K)
    context, weights = attention(queries(attention), attention.prepare(keys, src_pad_mask))
    assert attention.context_size == 0 and context.shape == (B, T, 0)
    assert weights.shape == (B, T, S) and torch.all(weights == 0.0)


# -- local attention -----------------------------------------------------------------------------------------------


def test_local_m_is_zero_outside_the_window_around_the_step(memory):
    keys, src_pad_mask = memory
    attention = build("local_m")
    query = queries(attention, steps=1)
    cache = attention.prepare(keys, src_pad_mask)
    positions = torch.arange(S)
    for t in range(9):
        _, weights = attention(query, cache, step=t)  # (B, 1, S)
        for b, length in enumerate([7, 4, 1]):
            centre = min(t, length - 1)  # clamped to the last real token
            outside = (positions - centre).abs() > D
            assert torch.all(weights[b, 0, outside] == 0.0)
            assert torch.all(weights[b, 0, ~outside & ~src_pad_mask[b]] > 0)
            torch.testing.assert_close(weights[b, 0].sum(), torch.tensor(1.0))


def test_local_p_is_the_windowed_softmax_times_a_gaussian(memory):
    keys, src_pad_mask = memory
    attention = build("local_p")
    query = queries(attention)
    _, weights = attention(query, attention.prepare(keys, src_pad_mask))
    lengths = torch.tensor([7.0, 4.0, 1.0])
    centre = lengths[:, None] * torch.sigmoid(attention.position_layer(query).squeeze(-1))  # p_t (B, T), Eq. 9
    distance = torch.arange(S)[None, None, :] - centre.unsqueeze(-1)  # (B, T, S)
    outside = distance.abs() > D
    masked = energy(attention, query, keys).masked_fill(outside | src_pad_mask.unsqueeze(1), -math.inf)
    expected = torch.softmax(masked, -1) * torch.exp(-distance.square() / (2 * (D / 2) ** 2))  # Eq. 10
    torch.testing.assert_close(weights, expected)
    assert torch.all(weights[outside] == 0.0) and torch.all(on_padding(weights, src_pad_mask) == 0.0)
    assert torch.all(weights.sum(-1) <= 1.0) and torch.all(weights.sum(-1) > 0.0)


def test_a_wide_local_m_window_is_global_attention(memory):
    keys, src_pad_mask = memory
    torch.manual_seed(4)
    local = MonotonicLocalAttention(query_size=Q, key_size=K, window=S)
    general = GeneralAttention(query_size=Q, key_size=K)
    general.load_state_dict({"key_layer.weight": local.inner.key_layer.weight})
    query = queries(local)
    torch.testing.assert_close(attend(local, query, keys, src_pad_mask), attend(general, query, keys, src_pad_mask))


# -- coverage ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "factory",
    [
        partial(AdditiveAttention, coverage=True),
        partial(ConcatAttention, coverage=True),
        partial(MonotonicLocalAttention, score="concat", score_options={"coverage": True}),
        partial(MultiHeadAttention, score="additive", heads=2, score_options={"coverage": True}),
    ],
)
def test_coverage_is_read_by_the_score_and_forces_a_step_loop(factory, memory):
    keys, src_pad_mask = memory
    torch.manual_seed(5)
    attention = factory(query_size=Q, key_size=K)
    assert attention.coverage and attention.needs_step_loop
    query = queries(attention, steps=1)
    cache = attention.prepare(keys, src_pad_mask)
    coverage = torch.rand(B, S).masked_fill(src_pad_mask, 0.0)
    plain, covered, zero = (attention(query, cache, coverage=c)[1] for c in (None, coverage, torch.zeros(B, S)))
    torch.testing.assert_close(zero, plain)  # no coverage yet == zero coverage
    assert not torch.allclose(covered, plain)
    torch.testing.assert_close(covered.sum(-1), torch.ones(B, 1))
    assert torch.all(on_padding(covered, src_pad_mask) == 0.0)


def test_coverage_energy_matches_formula(memory):
    keys, _ = memory
    attention = AdditiveAttention(query_size=Q, key_size=K, hidden_size=9, coverage=True)
    query, coverage = queries(attention, steps=1), torch.rand(B, S)
    covered = attention.score(query, attention.add_coverage(attention.project_keys(keys), coverage))
    b, s = 1, 3
    w_c = attention.coverage_layer.weight[:, 0]  # (A,)
    hidden = torch.tanh(attention.query_layer(query[b, 0]) + attention.key_layer(keys[b, s]) + w_c * coverage[b, s])
    torch.testing.assert_close(covered[b, 0, s], attention.energy_layer(hidden).squeeze())


def test_coverage_is_refused_where_it_was_not_built(memory):
    keys, src_pad_mask = memory
    attention = GeneralAttention(query_size=Q, key_size=K)
    with pytest.raises(ValueError, match="without coverage"):
        attention(queries(attention), attention.prepare(keys, src_pad_mask), coverage=torch.zeros(B, S))
    assert not attention.needs_step_loop and not AdditiveAttention(query_size=Q, key_size=K).needs_step_loop


# -- refusals ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [DotAttention, ScaledDotAttention])
def test_dot_scores_refuse_different_query_and_key_sizes(cls):
    with pytest.raises(ConfigError, match=r"query size \(decoder hidden, 6\).*key size \(encoder output, 4\).*general"):
        cls(query_size=Q, key_size=K)


def test_bad_score_configuration_is_refused_with_the_choices():
    choices = f"valid choices: {', '.join(SCORES)}"  # the catalogue's scores, in name order
    with pytest.raises(ConfigError, match=choices):
        build_score("magic", Q, K)
    with pytest.raises(ConfigError, match=choices):
        MultiHeadAttention(query_size=Q, key_size=K, score="local_m")
    with pytest.raises(ConfigError, match="cannot read coverage; valid choices: additive, concat"):
        PredictiveLocalAttention(query_size=Q, key_size=K, score="general", score_options={"coverage": True})
    with pytest.raises(ConfigError, match="no option heads; valid choices: hidden_size, coverage"):
        build_score("additive", Q, K, {"heads": 2})
    with_parameters = ", ".join(name for name in SCORES if name not in ("dot", "scaled_dot"))
    with pytest.raises(ConfigError, match=f"valid choices: {with_parameters}"):
        MultiHeadAttention(query_size=K, key_size=K, score="dot")
    with pytest.raises(ConfigError, match="heads >= 1"):
        MultiHeadAttention(query_size=Q, key_size=K, heads=0)
    with pytest.raises(ConfigError, match="window >= 1"):
        MonotonicLocalAttention(query_size=Q, key_size=K, window=0)
    with pytest.raises(ConfigError, match="sharpness > 0"):
        CosineAttention(query_size=Q, key_size=K, sharpness=0.0)


@pytest.mark.parametrize("factory", [LocationAttention, partial(MonotonicLocalAttention, score="location")])
def test_location_refuses_a_source_longer_than_its_maximum(factory):
    attention = factory(query_size=Q, key_size=K, max_source_length=5) if factory is LocationAttention else factory(
        query_size=Q, key_size=K, score_options={"max_source_length": 5}
    )
    attention.prepare(torch.randn(B, 5, K), torch.zeros(B, 5, dtype=torch.bool))
    with pytest.raises(ConfigError, match="source of 6 pieces .* max_source_length=5; fix: .*max_source_length"):
        attention.prepare(torch.randn(B, 6, K), torch.zeros(B, 6, dtype=torch.bool))


# -- Hydra configs -------------------------------------------------------------------------------------------------

CONFIG_NAMES = attention_names()


def test_the_catalogue_page_shows_every_attention_file():
    page = (REPO / "docs" / "attention_catalogue.md").read_text(encoding="utf-8")
    assert markdown_table() in page, (
        "docs/attention_catalogue.md differs from conf/model/attention/*.yaml; fix: make docs"
    )


def test_write_page_replaces_only_the_table(tmp_path):
    page = tmp_path / "catalogue.md"
    header = markdown_table().splitlines()[0]
    page.write_text(f"intro\n\n{header}\n|---|\n| `old` | row |\n\nafter\n", encoding="utf-8")
    assert write_page(page)
    assert page.read_text(encoding="utf-8") == "intro\n\n" + markdown_table() + "\nafter\n"
    assert not write_page(page)
    (tmp_path / "other.md").write_text("no table\n", encoding="utf-8")
    with pytest.raises(ValueError, match="other.md: no catalogue table"):
        write_page(tmp_path / "other.md")


def test_an_unknown_attention_is_refused_at_composition_with_the_choices(tmp_path):
    with pytest.raises(MissingConfigException) as info:
        compose_train(["model/attention=foo"], tmp_path)
    assert "Available options in 'model/attention'" in str(info.value)
    assert all(f"\t{name}\n" in str(info.value) + "\n" for name in CONFIG_NAMES)


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["model/attention=concat", "model.attention.coverage=true"], "ConcatAttention"),
        (
            ["model/attention=local_p", "model.attention.score=concat", "+model.attention.score_options.coverage=true"],
            "PredictiveLocalAttention",
        ),
        (
            ["model/attention=multihead", "model.attention.score=location", "model.attention.heads=2"],
            "MultiHeadAttention",
        ),
        (["model/attention=none"], "NoAttention"),
    ],
)
def test_attention_configs_build_models(overrides, expected, tmp_path):
    cfg = compose_train(overrides + ["model/decoder=luong", "model.decoder.input_feeding=false"], tmp_path)
    module = hydra.utils.instantiate(cfg.model, src_vocab_size=11, tgt_vocab_size=11, _recursive_=False)
    attention = module.net.decoder.attention
    assert type(attention).__name__ == expected
    assert module.net.decoder.needs_step_loop == attention.coverage


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model/attention=general", "+model.attention.coverage=true"], "valid choices: additive, concat"),
        (["model/attention=local_m", "+model.attention.score_options.coverage=true"], "valid choices: additive, concat"),
        (["model/attention=multihead", "model.attention.score=dot"], "valid choices: additive, concat, cosine"),
        (["model/attention=local_p", "model.attention.score=multihead"], "valid choices: additive, concat, cosine"),
        (["model/attention=cosine", "+model.attention.heads=2"], "valid choices: sharpness, learn_sharpness"),
    ],
)
def test_impossible_attention_configs_are_refused_with_the_choices(overrides, message, tmp_path):
    cfg = compose_train(overrides, tmp_path)
    with pytest.raises(Exception) as info:  # Hydra wraps the ConfigError in an InstantiationException
        hydra.utils.instantiate(cfg.model, src_vocab_size=11, tgt_vocab_size=11, _recursive_=False)
    error = info.value if isinstance(info.value, ConfigError) else info.value.__cause__
    assert isinstance(error, ConfigError) and message in str(error)
