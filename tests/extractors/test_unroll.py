"""The unrolled gates of torch's LSTM/GRU equal the fused modules, and the gates
themselves follow the textbook formulas (a float64 reference written here)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import actstore
from actstore.errors import ModelError
from extractors.recurrent_tap import module_output, tap
from extractors.unroll import describe, find_recurrent, unroll

TOLERANCE = 1e-5
LENGTHS = torch.tensor([7, 3, 5, 1, 7, 2])


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/extractors/conftest.py


def packed_run(module: nn.Module, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The fused module over variable-length sequences: padded output, h_n, c_n."""
    packed = pack_padded_sequence(x, lengths, batch_first=module.batch_first, enforce_sorted=False)
    with torch.no_grad():
        out, state = module(packed)
    padded, _ = pad_packed_sequence(out, batch_first=module.batch_first)
    h_n, c_n = state if isinstance(state, tuple) else (state, torch.zeros(0))
    return padded, h_n, c_n


def real(values: Tensor, lengths: Tensor) -> Tensor:
    """Time-major values with padded steps zeroed."""
    mask = torch.arange(values.shape[0])[:, None] < lengths[None, :]
    return values * mask[..., None]


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_random_weights_equal_fused_module(
    cls: type[nn.Module], bidirectional: bool, batch_first: bool
) -> None:
    torch.manual_seed(1)
    module = cls(5, 6, num_layers=3, bidirectional=bidirectional, batch_first=batch_first)
    module.eval()
    x = torch.randn(6, 7, 5) if batch_first else torch.randn(7, 6, 5)
    fused, h_n, c_n = packed_run(module, x, LENGTHS)
    time_major = x.transpose(0, 1) if batch_first else x
    unrolled = unroll(describe(module, "rnn"), time_major, LENGTHS)  # type: ignore[arg-type]
    fused_tm = fused.transpose(0, 1) if batch_first else fused
    assert (real(unrolled.output, LENGTHS) - fused_tm).abs().max() <= TOLERANCE
    assert (unrolled.final_h - h_n).abs().max() <= TOLERANCE
    if cls is nn.LSTM:
        assert unrolled.final_c is not None
        assert (unrolled.final_c - c_n).abs().max() <= TOLERANCE
        # the stored c of the last layer at each sequence's last step is torch's c_n
        last = LENGTHS - 1
        for d in range(2 if bidirectional else 1):
            cells = unrolled.states[2, d]["c"]
            at = cells[last, torch.arange(6)] if d == 0 else cells[0]
            assert (at - c_n[2 * (2 if bidirectional else 1) + d]).abs().max() <= TOLERANCE
    # every lower layer's h is the next layer's input: check layer 0 against a 1-layer run
    single = cls(5, 6, num_layers=1, bidirectional=bidirectional, batch_first=batch_first).eval()
    single.load_state_dict({k: v for k, v in module.state_dict().items() if "_l0" in k})
    lower, _, _ = packed_run(single, x, LENGTHS)
    lower_tm = lower.transpose(0, 1) if batch_first else lower
    directions = 2 if bidirectional else 1
    mine = torch.cat([unrolled.states[0, d]["h"] for d in range(directions)], dim=2)
    assert (real(mine, LENGTHS) - lower_tm).abs().max() <= TOLERANCE


def test_projected_lstm_equals_fused_module() -> None:
    torch.manual_seed(2)
    module = nn.LSTM(4, 8, num_layers=2, bidirectional=True, proj_size=3).eval()
    x = torch.randn(7, 6, 4)
    fused, h_n, c_n = packed_run(module, x, LENGTHS)
    unrolled = unroll(describe(module, ""), x, LENGTHS)  # type: ignore[arg-type]
    assert unrolled.states[1, 1]["h"].shape[2] == 3 and unrolled.states[1, 1]["c"].shape[2] == 8
    assert (real(unrolled.output, LENGTHS) - fused).abs().max() <= TOLERANCE
    assert (unrolled.final_h - h_n).abs().max() <= TOLERANCE
    assert unrolled.final_c is not None and (unrolled.final_c - c_n).abs().max() <= TOLERANCE


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def test_lstm_gates_by_hand_for_one_step() -> None:
    """Step 2 of a 2-layer LSTM, layer 1: i, f, g, o, c, h from the weights in float64,
    given layer 0's h and layer 1's previous h and c as the unrolling stored them."""
    torch.manual_seed(3)
    lstm = nn.LSTM(3, 4, num_layers=2).eval()
    x = torch.randn(4, 2, 3)
    states = unroll(describe(lstm, ""), x, torch.tensor([4, 4])).states  # type: ignore[arg-type]
    p = {k: v.double().numpy() for k, v in lstm.state_dict().items()}
    below = states[0, 0]["h"][2].double().numpy()  # layer 1's input at step 2
    h_prev = states[1, 0]["h"][1].double().numpy()
    c_prev = states[1, 0]["c"][1].double().numpy()
    pre = below @ p["weight_ih_l1"].T + p["bias_ih_l1"] + h_prev @ p["weight_hh_l1"].T
    pre += p["bias_hh_l1"]
    i, f, g, o = (pre[:, k * 4 : (k + 1) * 4] for k in range(4))
    expect = {"i": sigmoid(i), "f": sigmoid(f), "g": np.tanh(g), "o": sigmoid(o)}
    expect["c"] = expect["f"] * c_prev + expect["i"] * expect["g"]
    expect["h"] = expect["o"] * np.tanh(expect["c"])
    for gate, value in expect.items():
        np.testing.assert_allclose(states[1, 0][gate][2].numpy(), value, atol=TOLERANCE)


@pytest.mark.parametrize("convention", ["torch", "cho"])
def test_gru_gates_by_hand_for_one_step(convention: str) -> None:
    torch.manual_seed(4)
    gru = nn.GRU(3, 4).eval()
    recurrent = describe(gru, "")
    assert recurrent is not None
    if convention == "cho":  # the same weights read with the other update rule
        gru.gate_convention = "cho"  # type: ignore[assignment]
        recurrent = describe(gru, "")
        assert recurrent is not None and recurrent.convention == "cho"
    x = torch.randn(3, 2, 3)
    states = unroll(recurrent, x, torch.tensor([3, 3])).states[0, 0]
    p = {k: v.double().numpy() for k, v in gru.state_dict().items()}
    h_prev = states["h"][0].double().numpy()
    xi = x[1].double().numpy() @ p["weight_ih_l0"].T + p["bias_ih_l0"]
    hh = h_prev @ p["weight_hh_l0"].T + p["bias_hh_l0"]
    r = sigmoid(xi[:, :4] + hh[:, :4])
    z = sigmoid(xi[:, 4:8] + hh[:, 4:8])
    n = np.tanh(xi[:, 8:] + r * hh[:, 8:])
    h = (1 - z) * n + z * h_prev if convention == "torch" else (1 - z) * h_prev + z * n
    for gate, value in {"r": r, "z": z, "n": n, "h": h}.items():
        np.testing.assert_allclose(states[gate][1].numpy(), value, atol=TOLERANCE)
    if convention == "torch":
        fused, _ = gru(x)
        assert (states["h"] - fused).abs().max() <= TOLERANCE


class SteepGRU(nn.Module):
    """A GRU written out step by step with IMAGINET's activations (sigma(3.75 x),
    clip(x, 0, 5)) and the update h = (1 - z) h_prev + z n, named as nn.GRU is."""

    actstore_recurrent = "gru"
    gate_convention = "cho"
    bidirectional = False
    batch_first = True

    def __init__(self, input_size: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.gate_activation: Callable[[Tensor], Tensor] = lambda v: torch.sigmoid(3.75 * v)
        self.candidate_activation: Callable[[Tensor], Tensor] = lambda v: v.clamp(0.0, 5.0)
        for k in range(num_layers):
            width = input_size if k == 0 else hidden_size
            for name, shape in (
                (f"weight_ih_l{k}", (3 * hidden_size, width)),
                (f"weight_hh_l{k}", (3 * hidden_size, hidden_size)),
                (f"bias_ih_l{k}", (3 * hidden_size,)),
                (f"bias_hh_l{k}", (3 * hidden_size,)),
            ):
                self.register_parameter(name, nn.Parameter(torch.randn(*shape)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        finals = []
        for k in range(self.num_layers):
            w_ih, w_hh = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
            b_ih, b_hh = getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}")
            h = x.new_zeros(x.shape[0], self.hidden_size)
            out = []
            for t in range(x.shape[1]):
                xr, xz, xn = (x[:, t] @ w_ih.T + b_ih).chunk(3, dim=1)
                hr, hz, hn = (h @ w_hh.T + b_hh).chunk(3, dim=1)
                r = self.gate_activation(xr + hr)
                z = self.gate_activation(xz + hz)
                n = self.candidate_activation(xn + r * hn)
                h = (1 - z) * h + z * n
                out.append(h)
            x = torch.stack(out, dim=1)
            finals.append(h)
        return x, torch.stack(finals)


def test_custom_steep_gru_equals_its_own_forward() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Embedding(20, 6), SteepGRU(6, 5, num_layers=2)).eval()
    ids = torch.randint(0, 20, (3, 8))
    with torch.no_grad():
        own, h_n = model(ids)
    recurrent = find_recurrent(model)[0]
    assert not recurrent.replayable and recurrent.convention == "cho"
    with tap([recurrent]) as seen, torch.no_grad():
        again, _ = model(ids)
    assert torch.equal(again, own)  # the module's own forward still ran
    unrolled = seen["1"]
    assert (unrolled.output - own.transpose(0, 1)).abs().max() <= TOLERANCE
    assert (unrolled.final_h - h_n).abs().max() <= TOLERANCE
    n = unrolled.states[1, 0]["n"]
    assert float(n.min()) >= 0.0 and float(n.max()) <= 5.0 and float(n.max()) > 1.0


def test_imaginet_steep_gru_equals_its_own_forward() -> None:
    imaginet = pytest.importorskip("extractors.imaginet")
    torch.manual_seed(6)
    model = imaginet.Imaginet(n_vocab=30, image_dim=4, embedding_dim=8, hidden_size=6).eval()
    ids = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    recurrents = find_recurrent(model)
    assert [r.path for r in recurrents] == ["visual", "textual"]
    with tap(recurrents, torch.tensor([4, 2])) as seen, torch.no_grad():
        model(ids)
        embedded = model.embedding(ids)
        for recurrent in recurrents:
            own, _ = recurrent.module.__class__.forward(recurrent.module, embedded)
            mine = seen[recurrent.path].output.transpose(0, 1)
            assert (mine[0] - own[0]).abs().max() <= TOLERANCE
            assert (mine[1, :2] - own[1, :2]).abs().max() <= TOLERANCE


def test_trained_models_equal_fused_modules(ewt_small: Path) -> None:
    """A 2-layer LSTM language model and a 2-layer bidirectional GRU tagger, each trained
    for 40 steps on EWT sentences (weights well away from their initialisation)."""
    with actstore.open(ewt_small) as store:
        tokens = store.sql("SELECT sentence_id, form, upos FROM tokens ORDER BY row")
    words = {w: i + 1 for i, w in enumerate(sorted(set(tokens.form.str.lower())))}
    tags = {t: i for i, t in enumerate(sorted(set(tokens.upos)))}
    groups = [g for _, g in tokens.groupby("sentence_id", sort=True)]
    ids = [torch.tensor([words[w.lower()] for w in g.form]) for g in groups]
    upos = [torch.tensor([tags[t] for t in g.upos]) for g in groups]
    lengths = torch.tensor([len(s) for s in ids])
    padded = nn.utils.rnn.pad_sequence(ids, batch_first=True)
    targets = nn.utils.rnn.pad_sequence(upos, batch_first=True, padding_value=-100)
    torch.manual_seed(7)
    embedding = nn.Embedding(len(words) + 1, 16, padding_idx=0)
    lstm = nn.LSTM(16, 24, num_layers=2, batch_first=True)
    gru = nn.GRU(16, 12, num_layers=2, bidirectional=True, batch_first=True)
    lm_head, tag_head = nn.Linear(24, len(words) + 1), nn.Linear(24, len(tags))
    parameters = [p for m in (embedding, lstm, gru, lm_head, tag_head) for p in m.parameters()]
    before = lstm.weight_hh_l1.detach().clone()
    optimiser = torch.optim.Adam(parameters, lr=0.02)
    for step in range(40):
        batch = torch.arange(step * 16, step * 16 + 16) % len(ids)
        x, y, n = embedding(padded[batch]), padded[batch], lengths[batch]
        lm, _ = lstm(x)
        lm_loss = nn.functional.cross_entropy(
            lm_head(lm[:, :-1]).transpose(1, 2), y[:, 1:].masked_fill(y[:, 1:] == 0, -100)
        )
        packed = pack_padded_sequence(x, n, batch_first=True, enforce_sorted=False)
        tagged, _ = pad_packed_sequence(gru(packed)[0], batch_first=True, total_length=x.shape[1])
        tag_loss = nn.functional.cross_entropy(tag_head(tagged).transpose(1, 2), targets[batch])
        optimiser.zero_grad()
        (lm_loss + tag_loss).backward()
        optimiser.step()
    assert (lstm.weight_hh_l1 - before).abs().max() > 0.3  # trained, not initial
    lstm.eval()
    gru.eval()
    batch = torch.arange(40, 72)
    x, n = embedding(padded[batch]).detach(), lengths[batch]
    for module in (lstm, gru):
        fused, h_n, c_n = packed_run(module, x, n)
        width = fused.shape[1]
        unrolled = unroll(describe(module, ""), x[:, :width].transpose(0, 1), n)  # type: ignore[arg-type]
        assert (real(unrolled.output, n) - fused.transpose(0, 1)).abs().max() <= TOLERANCE
        assert (unrolled.final_h - h_n).abs().max() <= TOLERANCE
        if unrolled.final_c is not None:
            assert (unrolled.final_c - c_n).abs().max() <= TOLERANCE


def test_fused_modules_get_their_output_in_torch_format() -> None:
    torch.manual_seed(8)
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True).eval()
    recurrent = find_recurrent(lstm)[0]
    assert recurrent.replayable
    x = torch.randn(6, 7, 3)
    packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        want, (h_want, c_want) = lstm(packed)
        with tap([recurrent]):
            got, (h_got, c_got) = lstm(packed)
        assert "forward" not in vars(lstm)  # restored
        assert torch.equal(got.batch_sizes, want.batch_sizes)
        assert torch.equal(got.sorted_indices, want.sorted_indices)
        assert (got.data - want.data).abs().max() <= TOLERANCE
        assert (h_got - h_want).abs().max() <= TOLERANCE
        assert (c_got - c_want).abs().max() <= TOLERANCE
        unbatched = torch.randn(5, 3)
        want_u, (h_u, _) = lstm(unbatched)
        unrolled = unroll(recurrent, unbatched[:, None], torch.tensor([5]))
        got_u, (h_g, _) = module_output(recurrent, unrolled, None, True)
        assert got_u.shape == want_u.shape and (got_u - want_u).abs().max() <= TOLERANCE
        assert h_g.shape == h_u.shape


def test_a_given_initial_state_is_used() -> None:
    torch.manual_seed(9)
    gru = nn.GRU(3, 4, num_layers=2).eval()
    x, h0 = torch.randn(5, 2, 3), torch.randn(2, 2, 4)
    with torch.no_grad():
        want, _ = gru(x, h0)
    got = unroll(describe(gru, ""), x, torch.tensor([5, 5]), h0)  # type: ignore[arg-type]
    assert (got.output - want).abs().max() <= TOLERANCE


def test_refusals_are_one_line() -> None:
    with pytest.raises(
        ModelError, match=r"^Sequential has no recurrent layer .* Embedding, Linear$"
    ):
        find_recurrent(nn.Sequential(nn.Embedding(4, 2), nn.Linear(2, 2)))

    class Partial(nn.Module):
        actstore_recurrent = "lstm"
        hidden_size = 3

    with pytest.raises(ModelError, match="needs the attributes num_layers, bidirectional"):
        find_recurrent(Partial())

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(2, 2)

        def forward(self, x: Tensor) -> Tensor:
            return self.gru(self.gru(x)[0])[0]

    model = Twice()
    with (
        pytest.raises(ModelError, match="gru ran twice in one forward pass"),
        tap(find_recurrent(model)),
    ):
        model(torch.zeros(3, 1, 2))
