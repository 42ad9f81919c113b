"""Softmax (multinomial logistic) probes trained with mini-batches in torch.

METHODS.md, "Decoding probes": the probe is a softmax layer. :func:`train_softmax`
is the engine: Adam on mini-batches, learning rate decayed linearly to zero, L2 on
the weights of standardised features, the cross-entropy gradient written out (no
autograd). It trains several heads at once on the same batches (one per label set:
offsets, control task), each label ``-1`` meaning "no label for this head here", so
one pass over a site serves every head. :class:`LinearProbe` wraps it as a
scikit-learn classifier for data in memory; ``queries.probe`` feeds it from a store.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from actstore import progress
from actstore.devices import resolve_device

Batches = Iterator[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Schedule:
    """How long and how fast to train: Adam steps, batch size, learning rate, L2 (and L1:
    an elastic net) on standardised weights, and early stopping (an evaluation every
    ``steps_per_epoch`` steps; training stops when ``patience`` evaluations in a row
    improved no head)."""

    n_steps: int
    batch_size: int = 512
    learning_rate: float = 0.01
    alpha: float = 1e-4
    steps_per_epoch: int = 0
    patience: int = 0
    l1: float = 0.0

    @classmethod
    def for_rows(
        cls,
        n_rows: int,
        *,
        epochs: float,
        batch_size: int,
        min_steps: int = 0,
        max_steps: int = 1 << 62,
        patience: int = 0,
        learning_rate: float = 0.01,
        alpha: float = 1e-4,
        l1: float = 0.0,
    ) -> Schedule:
        """``epochs`` passes over ``n_rows`` rows, within ``min_steps`` and ``max_steps``.

        Batches hold at most an eighth of the rows, so a small selection still gets
        eight steps an epoch; the learning rate decays linearly to zero over the steps
        planned, so it follows the data's size.

        Examples
        --------
        >>> Schedule.for_rows(10_000, epochs=5, min_steps=50, batch_size=500).n_steps
        100
        >>> small = Schedule.for_rows(600, epochs=20, batch_size=512)
        >>> small.batch_size, small.steps_per_epoch, small.n_steps
        (75, 8, 160)
        """
        batch = max(1, min(batch_size, max(16, -(-n_rows // 8))))
        per_epoch = max(1, -(-n_rows // batch))
        steps = int(np.clip(np.ceil(epochs * per_epoch), max(min_steps, 1), max_steps))
        return cls(steps, batch, learning_rate, alpha, per_epoch, patience, l1)


@dataclass
class Trained:
    """What :func:`train_softmax` learned: per head, ``(coef, intercept)`` acting on raw
    features, and how training went."""

    weights: list[tuple[np.ndarray, np.ndarray]]
    steps: int  # Adam steps taken
    best_epoch: list[int]  # per head, the epoch whose weights were kept (0: the last ones,
    # when there was no held-out set or no held-out label for the head)


def train_softmax(
    batches: Batches,
    mean: np.ndarray,
    scale: np.ndarray,
    n_classes: Sequence[int],
    schedule: Schedule,
    device: torch.device,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    label: str = "train",
) -> Trained:
    """Train one softmax head per label column; return each head's raw-feature weights.

    Parameters
    ----------
    batches
        Yields at least ``schedule.n_steps`` pairs ``(X, Y)``: ``X`` rows x features
        (raw, float16 or float32), ``Y`` rows x heads (integer class codes, -1 where a
        head has no label).
    mean, scale
        Feature standardisation: the heads see ``(X - mean) / scale``.
    n_classes
        Classes per head.
    validation
        Held-out ``(X, Y)``: after every epoch (and after the last step) each head's mean
        cross-entropy on it is measured, each head keeps the weights of its best epoch,
        and training stops once ``max(1, schedule.patience)`` epochs in a row improved no
        head. A head with no held-out label keeps its last weights.
    label
        The name of the progress bar counting steps, with the epoch beside it (shown
        as :mod:`queries.progress` says).

    Examples
    --------
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]], np.float32)
    >>> y = np.array([[0], [0], [1], [1]])
    >>> batches = iter(lambda: (x, y), None)  # the same batch, forever
    >>> trained = train_softmax(batches, np.array([1.5]), np.array([1.0]), [2],
    ...                         Schedule(200, learning_rate=0.1), torch.device("cpu"))
    >>> ((coef, intercept),) = trained.weights
    >>> logits(x, coef, intercept).argmax(axis=1).tolist(), trained.steps
    ([0, 0, 1, 1], 200)
    """
    n_features, n_heads, width = mean.size, len(n_classes), max(n_classes)
    shift = torch.as_tensor(mean, dtype=torch.float32, device=device)
    inv_scale = torch.as_tensor(1.0 / scale, dtype=torch.float32, device=device)
    # all heads in one padded tensor: a step costs the same few ops whatever their number
    weight = torch.zeros(n_heads, width, n_features, device=device)
    bias = torch.zeros(n_heads, width, device=device)
    padding = torch.arange(width, device=device) >= torch.tensor(n_classes, device=device)[:, None]
    adam = _Adam([weight, bias])
    held = _Holdout(validation, shift, inv_scale, padding, device) if validation else None
    step, per_epoch = 0, max(1, schedule.steps_per_epoch)
    epochs = f"/{-(-schedule.n_steps // per_epoch)}"
    with progress.bar(schedule.n_steps, unit="steps", desc=label) as shown:
        for step in range(1, schedule.n_steps + 1):
            x_np, y_np = next(batches)
            x = torch.from_numpy(x_np).to(device, non_blocking=True)
            y = torch.from_numpy(y_np).to(device, non_blocking=True).long()
            x = (x.float() - shift) * inv_scale  # float16 batches convert here, on the device
            scores = (x @ weight.view(n_heads * width, n_features).T).view(-1, n_heads, width)
            g = torch.softmax((scores + bias).masked_fill_(padding, -torch.inf), dim=2)
            g.scatter_add_(2, y.clamp(min=0).unsqueeze(2), torch.full_like(g[:, :, :1], -1.0))
            valid = (y >= 0).float()
            g *= (valid / valid.sum(0).clamp(min=1)).unsqueeze(2)
            grad_w = (g.view(-1, n_heads * width).T @ x).view_as(weight) + schedule.alpha * weight
            if schedule.l1:  # the lasso's subgradient, as NeuroX trains its sparse probes
                grad_w += schedule.l1 * torch.sign(weight)
            lr = schedule.learning_rate * (1.0 - (step - 1) / schedule.n_steps)
            adam.step([grad_w, g.sum(0)], lr)
            epoch, into_epoch = divmod(step, per_epoch)
            shown.set_postfix_str(f"epoch {epoch + (into_epoch > 0)}{epochs}", refresh=False)
            shown.update(1)
            last = step == schedule.n_steps  # a last, partial epoch is scored too
            if held is not None and (not into_epoch or last):
                stale = held.stale(weight, bias, epoch + (into_epoch > 0))
                if stale >= max(1, schedule.patience):
                    break
    if held is not None:
        held.restore(weight, bias)
    out = []
    for h, k in enumerate(n_classes):
        coef = weight[h, :k] * inv_scale
        out.append((coef.cpu().numpy(), (bias[h, :k] - coef @ shift).cpu().numpy()))
    best = held.best_epoch.tolist() if held is not None else [0] * n_heads
    return Trained(out, step, best)


class _Holdout:
    """Held-out rows for early stopping: each head's best weights and loss so far."""

    def __init__(
        self,
        data: tuple[np.ndarray, np.ndarray],
        shift: torch.Tensor,
        inv_scale: torch.Tensor,
        padding: torch.Tensor,
        device: torch.device,
    ) -> None:
        x, y = data
        self.x = (torch.from_numpy(np.ascontiguousarray(x)).to(device).float() - shift) * inv_scale
        self.y = torch.from_numpy(np.asarray(y, np.int64)).to(device)
        self.padding = padding
        n_heads = padding.shape[0]
        self.best = torch.full((n_heads,), torch.inf, device=device)
        self.best_epoch = torch.zeros(n_heads, dtype=torch.long)
        self.kept: tuple[torch.Tensor, torch.Tensor] | None = None
        self.scored = torch.zeros(n_heads, dtype=torch.bool, device=device)
        self.since = 0

    def stale(self, weight: torch.Tensor, bias: torch.Tensor, epoch: int) -> int:
        """Evaluate after ``epoch``; keep improved heads' weights; epochs since any did."""
        n_heads, width, n_features = weight.shape
        scores = (self.x @ weight.view(n_heads * width, n_features).T).view(-1, n_heads, width)
        log_p = torch.log_softmax((scores + bias).masked_fill(self.padding, -torch.inf), dim=2)
        valid = self.y >= 0
        picked = log_p.gather(2, self.y.clamp(min=0).unsqueeze(2)).squeeze(2)
        loss = -(picked * valid).sum(0) / valid.sum(0).clamp(min=1)
        self.scored = valid.any(0)  # heads with no held-out label train to the end
        better = (loss < self.best - 1e-6 * self.best.abs().clamp(max=1e30)) & self.scored
        if self.kept is None:
            self.kept = (weight.clone(), bias.clone())
        self.kept[0][better] = weight[better]
        self.kept[1][better] = bias[better]
        self.best = torch.where(better, loss, self.best)
        self.best_epoch[better.cpu()] = epoch
        if not bool(self.scored.any()):
            return 0
        self.since = 0 if bool(better.any()) else self.since + 1
        return self.since

    def restore(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Put back each scored head's best weights (the others keep their last)."""
        if self.kept is not None:
            weight[self.scored] = self.kept[0][self.scored]
            bias[self.scored] = self.kept[1][self.scored]


class _Adam:
    """Adam (Kingma and Ba) over a list of tensors, with the learning rate given per step."""

    def __init__(self, params: list[torch.Tensor], betas: tuple[float, float] = (0.9, 0.999)):
        self.params = params
        self.b1, self.b2 = betas
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[torch.Tensor], lr: float) -> None:
        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            p.addcdiv_(m, (v / c2).sqrt_().add_(1e-8), value=-lr / c1)


def logits(x: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Raw-feature logits of a trained head, in float32 (float16 never computes on CPU).

    Examples
    --------
    >>> logits(np.ones((1, 2), np.float16), np.array([[1.0, 2.0]]), np.array([0.5]))
    array([[3.5]])
    """
    x32 = torch.from_numpy(np.ascontiguousarray(x)).float().numpy()
    return np.asarray(x32 @ coef.T + intercept)


class LinearProbe(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A softmax probe (multinomial logistic regression, L2) trained by mini-batch Adam.

    Features are standardised inside the probe; ``alpha`` is the L2 penalty on the
    standardised weights, added to the mean cross-entropy. Training runs ``epochs``
    passes over the data, but at least ``min_steps`` Adam steps, with the learning rate
    decayed linearly to zero.

    Parameters
    ----------
    alpha : float
        L2 strength (``C = 1 / (alpha * n_samples)`` in scikit-learn's
        ``LogisticRegression`` on standardised features).
    batch_size : int
    learning_rate : float
        Initial Adam learning rate.
    epochs : float
    min_steps : int
    device : str
        ``cpu`` (default), ``cuda``, ``cuda:N`` or ``auto``.
    random_state : int, RandomState or None
        Seeds the mini-batch order.

    Attributes
    ----------
    classes_ : ndarray
    coef_ : ndarray of shape (n_classes, n_features)
    intercept_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    n_iter_ : int
        Adam steps taken.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> X, y = load_iris(return_X_y=True)
    >>> LinearProbe(random_state=0).fit(X, y).score(X, y) > 0.9
    True
    """

    def __init__(
        self,
        alpha: float = 1e-4,
        batch_size: int = 512,
        learning_rate: float = 0.01,
        epochs: float = 10.0,
        min_steps: int = 500,
        device: str = "cpu",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.min_steps = min_steps
        self.device = device
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearProbe:
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(
                f"LinearProbe needs at least 2 classes to train, got 1 class ({self.classes_[0]!r})"
            )
        rng = check_random_state(self.random_state)
        batch = min(self.batch_size, len(X))
        schedule = Schedule.for_rows(
            len(X),
            epochs=self.epochs,
            min_steps=self.min_steps,
            batch_size=batch,
            learning_rate=self.learning_rate,
            alpha=self.alpha,
        )
        mean = X.mean(axis=0, dtype=np.float64)
        scale = X.std(axis=0, dtype=np.float64)
        scale[scale == 0] = 1.0
        torch.manual_seed(int(rng.randint(2**31)))
        trained = train_softmax(
            _shuffled_batches(X, codes[:, None].astype(np.int64), schedule.batch_size, rng),
            mean,
            scale,
            [self.classes_.size],
            schedule,
            resolve_device(self.device),
        )
        ((coef, intercept),) = trained.weights
        self.coef_, self.intercept_ = coef.astype(np.float64), intercept.astype(np.float64)
        self.n_iter_ = schedule.n_steps
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32)
        scores = X @ self.coef_.T + self.intercept_
        return np.asarray(scores[:, 1] - scores[:, 0] if self.classes_.size == 2 else scores)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32)
        scores = X @ self.coef_.T + self.intercept_
        scores -= scores.max(axis=1, keepdims=True)
        probs = np.exp(scores)
        return np.asarray(probs / probs.sum(axis=1, keepdims=True))

    def predict(self, X: np.ndarray) -> np.ndarray:
        best = self.predict_proba(X).argmax(axis=1)
        return np.asarray(self.classes_[best])


def _shuffled_batches(
    x: np.ndarray, y: np.ndarray, batch: int, rng: np.random.RandomState
) -> Batches:
    """Endless mini-batches, a fresh random order each epoch; the last short batch skipped
    unless the data is smaller than one batch."""
    while True:
        order = rng.permutation(len(x))
        for lo in range(0, max(1, len(x) - batch + 1), batch):
            take = order[lo : lo + batch]
            yield x[take], y[take]
