"""Block components read by forward hooks (``blocks.3.attn_out`` ...), against each block
of MiniLM-L6 and SmolLM2 computed by hand from its weights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import actstore
from actstore.cli import main
from extractors import models
from extractors.hooks import BLOCK_COMPONENTS
from extractors.testing import clone
from extractors.transformer import ExtractOptions, TransformerExtractor, extract
from tests.extractors.test_transformer import loaded_minilm, minilm_options

BY_HAND = ("attn_out", "resid_mid", "mlp.post", "mlp_out", "resid_post")


@pytest.fixture(scope="module")
def blocks_run(ewt_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM's layers and every block component over the 120 sentences."""
    store = clone(ewt_small, tmp_path_factory.mktemp("blocks") / "s")
    extract(store, minilm_options(sites="layer.*,blocks.*"), loaded=loaded_minilm())
    return store


def test_every_component_is_listed() -> None:
    extractor = TransformerExtractor(minilm_options(), loaded=loaded_minilm())
    specs = {s.name: s for s in extractor.sites()}
    blocks = [f"minilm/blocks.{i}.{c}" for i in range(6) for c in BLOCK_COMPONENTS]
    assert list(specs) == [f"minilm/layer.{i}" for i in range(7)] + blocks
    assert {specs[n].n_units for n in blocks if n.endswith("mlp.post")} == {1536}
    assert specs["minilm/blocks.2.mlp_out"].provenance == {
        "module": "encoder.layer.2.output.dense", "hook": "forward output",
    }  # fmt: skip
    assert specs["minilm/blocks.0.resid_pre"].provenance["hook"] == "forward input"


def test_residual_stream_equals_the_hidden_states(blocks_run: Path) -> None:
    """resid_pre of block i is layer.i and resid_post is layer.(i+1), byte for byte."""
    with actstore.open(blocks_run) as store:

        def stored(name: str) -> bytes:
            return bytes(store.acts(f"minilm/{name}", dtype=None).values.tobytes())

        for i in range(6):
            assert stored(f"blocks.{i}.resid_pre") == stored(f"layer.{i}"), i
            assert stored(f"blocks.{i}.resid_post") == stored(f"layer.{i + 1}"), i


def _bert_blocks(model: object, ids: list[int]) -> list[dict[str, torch.Tensor]]:
    """Each block's components for one unpadded input, from the weights by hand:
    attention heads, GELU (erf), LayerNorm, never a block's forward."""
    layers = model.encoder.layer  # type: ignore[attr-defined]
    x = model.embeddings(input_ids=torch.tensor([ids]))[0]  # type: ignore[attr-defined]
    out = []
    for layer in layers:
        attn = layer.attention.self
        heads, size = attn.num_attention_heads, attn.attention_head_size
        q, k, v = (
            F.linear(x, m.weight, m.bias).view(len(ids), heads, size).transpose(0, 1)
            for m in (attn.query, attn.key, attn.value)
        )
        probs = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(size), dim=-1)
        context = (probs @ v).transpose(0, 1).reshape(len(ids), heads * size)
        dense, norm = layer.attention.output.dense, layer.attention.output.LayerNorm
        attn_out = F.linear(context, dense.weight, dense.bias)
        mid = F.layer_norm(attn_out + x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        up = layer.intermediate.dense
        pre = F.linear(mid, up.weight, up.bias)
        post = 0.5 * pre * (1 + torch.erf(pre / math.sqrt(2)))
        down, norm = layer.output.dense, layer.output.LayerNorm
        mlp_out = F.linear(post, down.weight, down.bias)
        x = F.layer_norm(mlp_out + mid, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        out.append(
            {"attn_out": attn_out, "resid_mid": mid, "mlp.post": post, "mlp_out": mlp_out,
             "resid_post": x}
        )  # fmt: skip
    return out


def test_components_equal_the_blocks_computed_by_hand(blocks_run: Path) -> None:
    """attn_out, resid_mid, mlp.post, mlp_out and resid_post of every block, pooled to
    words (mean of the word's pieces, [CLS] at position 0), equal a by-hand forward of
    each sentence alone within float16 storage tolerance."""
    tokenizer, model = loaded_minilm()
    with actstore.open(blocks_run) as store:
        sentences = store.sql("SELECT text, first_row, n_words FROM sentences ORDER BY row")
        align = store.sql("SELECT piece_first, piece_last FROM align_minilm ORDER BY row")
        acts = {
            (i, c): store.acts(f"minilm/blocks.{i}.{c}").values for i in range(6) for c in BY_HAND
        }
    expected = {key: np.full(values.shape, np.nan, np.float32) for key, values in acts.items()}
    for text, lo, n in sentences.itertuples(index=False):
        ids = tokenizer(text)["input_ids"]  # type: ignore[operator]
        if len(ids) - 2 != int(align.piece_last[lo + n - 1]) + 1:
            continue  # the text is not what the words spell (SpaceAfter=No, say)
        with torch.inference_mode():
            blocks = _bert_blocks(model, ids)
            hf = model(torch.tensor([ids]), output_hidden_states=True).hidden_states  # type: ignore[operator]
        # the reference itself is right: its last residual is Hugging Face's
        np.testing.assert_allclose(blocks[-1]["resid_post"], hf[6][0], rtol=1e-4, atol=1e-4)
        for row in range(lo, lo + n):
            a, b = int(align.piece_first[row]) + 1, int(align.piece_last[row]) + 1
            for (i, c), out in expected.items():
                out[row] = blocks[i][c][a : b + 1].mean(dim=0).numpy()
    compared = ~np.isnan(expected[0, "attn_out"][:, 0])
    assert compared.sum() > 0.9 * len(compared)
    for key, values in acts.items():
        np.testing.assert_allclose(
            values[compared], expected[key][compared], rtol=2e-3, atol=2e-3, err_msg=str(key)
        )


def test_hooks_are_removed_after_the_run(blocks_run: Path) -> None:
    """Only Hugging Face's own output-capturing hooks stay on the model."""
    _, model = loaded_minilm()
    names = {
        fn.__qualname__
        for module in model.modules()  # type: ignore[attr-defined]
        for hooks in (module._forward_hooks, module._forward_pre_hooks)
        for fn in hooks.values()
    }
    assert not any("_keep_" in name for name in names), names


def test_cli_chooses_components_by_glob(
    ewt_small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path = clone(ewt_small, tmp_path / "s")
    assert main(["extract", str(store_path), "--sites", "blocks.*.mlp_out", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "extracted 6 sites (minilm/blocks.0.mlp_out .. minilm/blocks.5.mlp_out)" in out
    assert main(["extract", str(store_path), "--sites", "*mlp_out", "--device", "cpu"]) == 0
    assert "nothing to do: 6 sites" in capsys.readouterr().out  # the same six, no sentence site
    with actstore.open(store_path) as store:
        assert sorted(store.sites) == [f"minilm/blocks.{i}.mlp_out" for i in range(6)]
        assert store.site("minilm/blocks.4.mlp_out").provenance["module"] == (
            "encoder.layer.4.output.dense"
        )
    assert main(["extract", str(store_path), "--sites", "blocks.9.*"]) == 2
    err = capsys.readouterr().err
    assert "--sites 'blocks.9.*' matches none of minilm/layer.0 .. minilm/layer.6, " in err
    assert "minilm/blocks.{0..5}.{resid_pre,attn_out,resid_mid,mlp.post,mlp_out,resid_post}" in err


def _rms_norm(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    scale = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)  # type: ignore[operator]
    return norm.weight * (x * scale)


def _llama_block(base: object, i: int, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Block ``i`` of a Llama model on residual ``x`` (time, units), from its weights:
    RMSNorm, rotary embedding, grouped-query causal attention, SwiGLU."""
    layer = base.layers[i]  # type: ignore[attr-defined]
    attn = layer.self_attn
    n = len(x)
    size = attn.head_dim
    h = _rms_norm(x, layer.input_layernorm)
    q, k, v = (
        (h @ m.weight.T).view(n, -1, size).transpose(0, 1)
        for m in (attn.q_proj, attn.k_proj, attn.v_proj)
    )
    cos, sin = base.rotary_emb(x[None], torch.arange(n)[None])  # type: ignore[attr-defined]

    def rotate(t: torch.Tensor) -> torch.Tensor:
        half = t.shape[-1] // 2
        return t * cos[0] + torch.cat((-t[..., half:], t[..., :half]), -1) * sin[0]

    q, k = rotate(q), rotate(k)
    k, v = (t.repeat_interleave(q.shape[0] // t.shape[0], dim=0) for t in (k, v))
    scores = q @ k.transpose(1, 2) / math.sqrt(size)
    scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    context = (torch.softmax(scores, dim=-1) @ v).transpose(0, 1).reshape(n, -1)
    attn_out = context @ attn.o_proj.weight.T
    mid = x + attn_out
    g = _rms_norm(mid, layer.post_attention_layernorm)
    mlp = layer.mlp
    gate = g @ mlp.gate_proj.weight.T
    post = gate * torch.sigmoid(gate) * (g @ mlp.up_proj.weight.T)
    mlp_out = post @ mlp.down_proj.weight.T
    return {"attn_out": attn_out, "resid_mid": mid, "mlp.post": post, "mlp_out": mlp_out,
            "resid_post": mid + mlp_out}  # fmt: skip


@pytest.mark.slow
def test_smollm2_components_equal_the_blocks_computed_by_hand(
    ewt_small: Path, tmp_path: Path
) -> None:
    """SmolLM2 (pre-RMSNorm Llama), blocks 0 and 29, each word's last piece: resid_pre
    and resid_post are the hidden states (but for the last block: layer.30 has the final
    norm applied); the rest equal the blocks by hand from Hugging Face's residual input."""
    tokenizer, model = models.load(models.resolve_model("smollm2"))
    store_path = clone(ewt_small, tmp_path / "s")
    sites = "layer.0,layer.1,layer.29,layer.30,blocks.0.*,blocks.29.*"
    options = ExtractOptions(
        model="smollm2", sites=sites, align="last", device="cpu", where="sentence_id < 8"
    )
    extract(store_path, options, loaded=(tokenizer, model))
    with actstore.open(store_path) as store:
        rows = store.rows("sentence_id < 8")
        acts = {name.split("/")[1]: store.acts(name, rows).values for name in store.sites}
        sentences = store.sql("SELECT text, n_words FROM sentences WHERE row < 8 ORDER BY row")
        last = store.sql("SELECT piece_last FROM align_smollm2 ORDER BY row")["piece_last"]
        assert store.site("smollm2/blocks.29.attn_out").provenance["module"] == (
            "model.layers.29.self_attn.o_proj"
        )
    for i, (before, after) in enumerate([(0, 1), (29, 30)]):
        assert np.array_equal(acts[f"blocks.{before}.resid_pre"], acts[f"layer.{before}"])
        same = np.array_equal(acts[f"blocks.{before}.resid_post"], acts[f"layer.{after}"])
        assert same == (i == 0)
    base = model.base_model
    final = base.norm
    start = 0
    for text, n in sentences.itertuples(index=False):
        ids = tokenizer(text)["input_ids"]
        pieces = torch.from_numpy(last[start : start + n].to_numpy(copy=True))
        assert len(ids) == int(pieces[-1]) + 1  # the text is what the words spell
        with torch.inference_mode():
            hidden = base(torch.tensor([ids]), output_hidden_states=True).hidden_states
            for block in (0, 29):
                mine = _llama_block(base, block, hidden[block][0])
                for c in BY_HAND:
                    np.testing.assert_allclose(
                        acts[f"blocks.{block}.{c}"][start : start + n], mine[c][pieces],
                        rtol=5e-3, atol=5e-3, err_msg=f"blocks.{block}.{c}",
                    )  # fmt: skip
            after = _rms_norm(_llama_block(base, 29, hidden[29][0])["resid_post"], final)
            np.testing.assert_allclose(
                acts["layer.30"][start : start + n], after[pieces], rtol=5e-3, atol=5e-3
            )
        start += n
    # the tokenizer adds no BOS: no sentence.cls site for SmolLM2
    from extractors.sentence import SentenceExtractor

    sentence = SentenceExtractor(options, loaded=(tokenizer, model))
    assert sentence.pools == ("mean", "first", "last")
    assert not any(".cls." in s.name for s in sentence.sites())
