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

from actstore.devices import resolve_device

Batches = Iterator[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Schedule:
    """How long and how fast to train: Adam steps, batch size, learning rate, L2."""

    n_steps: int
    batch_size: int = 512
    learning_rate: float = 0.01
    alpha: float = 1e-4

    @classmethod
    def for_rows(
        cls, n_rows: int, *, epochs: float, min_steps: int, batch_size: int, **kw: float
    ) -> Schedule:
        """``epochs`` passes over ``n_rows`` rows, but never fewer than ``min_steps`` steps.

        Examples
        --------
        >>> Schedule.for_rows(10_000, epochs=5, min_steps=50, batch_size=500).n_steps
        100
        """
        steps = max(min_steps, int(np.ceil(epochs * n_rows / batch_size)))
        return cls(n_steps=steps, batch_size=batch_size, **kw)


def train_softmax(
    batches: Batches,
    mean: np.ndarray,
    scale: np.ndarray,
    n_classes: Sequence[int],
    schedule: Schedule,
    device: torch.device,
) -> list[tuple[np.ndarray, np.ndarray]]:
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

    Returns
    -------
    list of (coef, intercept)
        Per head, ``coef`` (classes x features) and ``intercept`` (classes) that act on
        raw features: ``X @ coef.T + intercept`` are the logits.

    Examples
    --------
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]], np.float32)
    >>> y = np.array([[0], [0], [1], [1]])
    >>> batches = iter(lambda: (x, y), None)  # the same batch, forever
    >>> ((coef, intercept),) = train_softmax(batches, np.array([1.5]), np.array([1.0]), [2],
    ...                                      Schedule(200, learning_rate=0.1), torch.device("cpu"))
    >>> logits(x, coef, intercept).argmax(axis=1).tolist()
    [0, 0, 1, 1]
    """
    n_features, n_heads, width = mean.size, len(n_classes), max(n_classes)
    shift = torch.as_tensor(mean, dtype=torch.float32, device=device)
    inv_scale = torch.as_tensor(1.0 / scale, dtype=torch.float32, device=device)
    # all heads in one padded tensor: a step costs the same few ops whatever their number
    weight = torch.zeros(n_heads, width, n_features, device=device)
    bias = torch.zeros(n_heads, width, device=device)
    padding = torch.arange(width, device=device) >= torch.tensor(n_classes, device=device)[:, None]
    adam = _Adam([weight, bias])
    for step in range(schedule.n_steps):
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
        adam.step([grad_w, g.sum(0)], schedule.learning_rate * (1.0 - step / schedule.n_steps))
    out = []
    for h, k in enumerate(n_classes):
        coef = weight[h, :k] * inv_scale
        out.append((coef.cpu().numpy(), (bias[h, :k] - coef @ shift).cpu().numpy()))
    return out


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
        ((coef, intercept),) = train_softmax(
            _shuffled_batches(X, codes[:, None].astype(np.int64), batch, rng),
            mean,
            scale,
            [self.classes_.size],
            schedule,
            resolve_device(self.device),
        )
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
