"""The BG/NBD model of repeat purchasing (Fader, Hardie & Lee 2005, "Counting your customers the easy way").

Each customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)`` (shape ``r``, rate ``alpha``)
while alive, and after every repeat purchase drops out for good with probability ``p ~ Beta(a, b)``. The
data per customer is the summary ``(x, t_x, T)``: ``x`` repeat purchases (purchases after the first),
``t_x`` the time of the last purchase and ``T`` the customer's age, both measured from the first purchase.
The time unit is whatever ``t_x`` and ``T`` are in (weeks for CDNOW; days in :mod:`models.value.clv`),
and ``alpha`` is in that unit. The paper's names are kept as argument names (hence the N803 exceptions:
``T`` is upper case).

Formulas (equation numbers of the paper):

* likelihood (eq. 6)::

    L = B(a, b+x)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+T)^(r+x))
        + [x > 0] B(a+1, b+x-1)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+t_x)^(r+x))

  evaluated in logs (``gammaln``, ``betaln``, ``logaddexp``) with its analytic gradient;
* probability alive (Fader, Hardie & Lee's note "Computing P(alive) using the BG/NBD model")::

    P(alive | x, t_x, T) = 1 / (1 + [x > 0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))

* expected purchases in ``(T, T+t]`` (eq. 10)::

    E[Y(t) | x, t_x, T] = (a+b+x-1)/(a-1) [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)]
                          * P(alive | x, t_x, T),          z = t/(alpha+T+t)

  computed after Euler's transformation ``2F1(A, B; C; z) = (1-z)^(C-A-B) 2F1(C-A, C-B; C; z)``, which
  turns the bracket into ``1 - (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)``: no huge power times a huge
  series for heavy buyers. ``x = t_x = T = 0`` gives eq. 7, the expectation for a customer just acquired.

>>> cdnow = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)   # the paper's CDNOW fit, in weeks
>>> round(float(cdnow.expected_purchases(39, x=2, t_x=30.43, T=38.86)), 3)   # the paper's worked example
1.226
>>> round(float(cdnow.p_alive(x=2, t_x=30.43, T=38.86)), 3), float(cdnow.p_alive(x=0, t_x=0, T=38.86))
(0.727, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np
import numpy.typing as npt
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

from models.value.fitting import FitError, FloatArray, minimise_log_params

ArrayLike = npt.ArrayLike

# (a - 1) divides eq. 10; at a = 1 the bracket vanishes too. Within this distance of 1 the limit is taken
# at 1 +/- A_EPS, which costs ~6 of 16 digits and no more.
A_EPS = 1e-6


@dataclass(frozen=True, slots=True, kw_only=True)
class BgNbdParams:
    """BG/NBD parameters: ``lambda ~ Gamma(r, alpha)``, ``p ~ Beta(a, b)``; ``alpha`` in the data's time unit.

    >>> BgNbdParams(r=0.5, alpha=10.0, a=1.0, b=2.0).in_unit(7.0).alpha   # weeks -> days
    70.0
    """

    r: float
    alpha: float
    a: float
    b: float

    # BG/NBD: no dropout at the first purchase (the MBG/NBD subclass sets this).
    dropout_at_first_purchase: ClassVar[bool] = False

    def __post_init__(self) -> None:
        values = (self.r, self.alpha, self.a, self.b)
        if not all(np.isfinite(v) and v > 0 for v in values):
            msg = f"BG/NBD parameters must be finite and > 0, got {self}"
            raise ValueError(msg)

    def as_array(self) -> FloatArray:
        return np.array([self.r, self.alpha, self.a, self.b], dtype=np.float64)

    def in_unit(self, factor: float) -> BgNbdParams:
        """The same model with time measured in units ``factor`` times smaller (weeks -> days: 7)."""
        return type(self)(r=self.r, alpha=self.alpha * factor, a=self.a, b=self.b)

    def log_likelihood(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:  # noqa: N803
        """Per-customer log-likelihood (eq. 6)."""
        return _log_likelihood(self.as_array(), *_summary(x, t_x, T), shift=self._shift)[0]

    def p_alive(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:  # noqa: N803
        """``P(alive | x, t_x, T)``; 1 for a customer without repeat purchases (the model's assumption)."""
        xs, txs, ages = _summary(x, t_x, T)
        return np.asarray(expit(-self._log_dead_odds(xs, txs, ages)), dtype=np.float64)

    def expected_purchases(self, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:  # noqa: N803
        """``E[Y(t) | x, t_x, T]``: expected purchases in the next ``t`` time units (eq. 10)."""
        xs, txs, ages = _summary(x, t_x, T)
        ts = np.asarray(t, dtype=np.float64)
        r, alpha, b = self.r, self.alpha, self.b + self._shift
        eps = self.a - 1.0
        if abs(eps) < A_EPS:
            eps = A_EPS if eps >= 0 else -A_EPS
        z = ts / (alpha + ages + ts)
        with np.errstate(over="ignore", invalid="ignore"):
            series = hyp2f1(eps + b - r, eps, eps + b + xs, z)
            bracket = -np.expm1(eps * np.log1p(-z)) - np.exp(eps * np.log1p(-z)) * (series - 1.0)
            if not np.all(np.isfinite(bracket)):
                # Very large a and b (dropout nearly the same for everyone) overflow the transformed series;
                # there the untransformed one is tame.
                direct = 1.0 - np.exp((r + xs) * np.log1p(-z)) * hyp2f1(r + xs, b + xs, eps + b + xs, z)
                bracket = np.where(np.isfinite(bracket), bracket, direct)
        expected = (eps + b + xs) / eps * bracket * expit(-self._log_dead_odds(xs, txs, ages))
        return np.asarray(np.where(ts > 0, expected, 0.0), dtype=np.float64)

    @property
    def _shift(self) -> int:
        # MBG/NBD's formulas are BG/NBD's with b + x - 1 -> b + x wherever dropout odds appear.
        return 1 if self.dropout_at_first_purchase else 0

    def _log_dead_odds(self, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:  # noqa: N803
        # log of a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x); BG/NBD: -inf where x = 0 (alive for sure).
        with np.errstate(divide="ignore", invalid="ignore"):
            log_odds = (
                np.log(self.a)
                - np.log(self.b + self._shift + x - 1.0)
                + (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x))
            )
        if self.dropout_at_first_purchase:
            return np.asarray(log_odds, dtype=np.float64)
        return np.asarray(np.where(x > 0, log_odds, -np.inf), dtype=np.float64)

    @classmethod
    def fit(
        cls,
        x: ArrayLike,
        t_x: ArrayLike,
        T: ArrayLike,  # noqa: N803
        *,
        init: BgNbdParams | None = None,
        prior: BgNbdParams | None = None,
        penalizer: float = 0.0,
    ) -> Self:
        """Maximum likelihood by L-BFGS-B from ``init``; with ``penalizer > 0`` a MAP estimate under a log-normal
        prior centred on ``prior`` (default ``init``), see :mod:`models.value.fitting`.

        >>> import numpy as np
        >>> fit = BgNbdParams.fit(np.array([0, 1, 3, 0, 2]), np.array([0, 5, 9, 0, 4]), np.array([10, 8, 12, 6, 9]))
        >>> type(fit).__name__, type(MbgNbdParams.fit([0, 1], [0, 3], [5, 6])).__name__
        ('BgNbdParams', 'MbgNbdParams')
        """
        xs, txs, ages = _summary(x, t_x, T)
        if xs.size == 0:
            msg = "BG/NBD needs at least one customer"
            raise FitError(msg)
        if init is None:
            # Scale-free start: the mean rate among buyers sets alpha/r, a Beta(1, 3) mean dropout of 25%.
            horizon = float(np.mean(ages)) or 1.0
            init = cls(r=1.0, alpha=horizon, a=1.0, b=3.0)
        shift = 1 if cls.dropout_at_first_purchase else 0

        def objective(u: FloatArray) -> tuple[float, FloatArray]:
            theta = np.exp(u)
            ll, grad = _log_likelihood(theta, xs, txs, ages, shift=shift)
            return -float(np.mean(ll)), -np.mean(grad, axis=1) * theta

        centre = None if prior is None else np.log(prior.as_array())
        u = minimise_log_params(objective, np.log(init.as_array()), penalty=penalizer / xs.size, prior=centre)
        r, alpha, a, b = (float(v) for v in np.exp(u))
        return cls(r=r, alpha=alpha, a=a, b=b)


def _summary(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:  # noqa: N803
    xs = np.asarray(x, dtype=np.float64)
    txs = np.asarray(t_x, dtype=np.float64)
    ages = np.asarray(T, dtype=np.float64)
    if np.any(xs < 0) or np.any(txs < 0) or np.any(txs > ages):
        msg = "a BG/NBD summary needs x >= 0 and 0 <= t_x <= T"
        raise ValueError(msg)
    return xs, txs, ages


def _log_likelihood(
    theta: FloatArray,
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,  # noqa: N803
    *,
    shift: int = 0,
) -> tuple[FloatArray, FloatArray]:
    """Eq. 6 per customer and its gradient in ``(r, alpha, a, b)`` (shape ``(4, n)``).

    ``shift = 1`` gives the MBG/NBD likelihood: ``b+x`` -> ``b+x+1`` in the beta functions' second arguments,
    and the second term (dropout after the last purchase) for every customer, ``x = 0`` included.
    """
    r, alpha, a, b = (float(v) for v in theta)
    repeat = (x > 0) | (shift > 0)
    bx = b + x + shift
    x1 = np.where(repeat, bx - 1.0, b)  # keeps betaln(a+1, b+x-1) finite where it is not used
    log_a = betaln(a, bx) - betaln(a, b) - (r + x) * np.log(alpha + T)
    log_b = np.where(repeat, betaln(a + 1.0, x1) - betaln(a, b) - (r + x) * np.log(alpha + t_x), -np.inf)
    log_sum = np.logaddexp(log_a, log_b)
    ll = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + log_sum
    w_a = np.exp(log_a - log_sum)
    w_b = np.exp(log_b - log_sum)
    psi_abx = digamma(a + bx)
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - w_a * np.log(alpha + T) - w_b * np.log(alpha + t_x)
    d_alpha = r / alpha - (r + x) * (w_a / (alpha + T) + w_b / (alpha + t_x))
    d_a = w_a * (digamma(a) - psi_abx) + w_b * (digamma(a + 1.0) - psi_abx) - (digamma(a) - digamma(a + b))
    d_b = (
        w_a * (digamma(bx) - psi_abx)
        + np.where(repeat, w_b * (digamma(x1) - psi_abx), 0.0)
        - (digamma(b) - digamma(a + b))
    )
    return np.asarray(ll, dtype=np.float64), np.vstack([d_r, d_alpha, d_a, d_b])


@dataclass(frozen=True, slots=True, kw_only=True)
class MbgNbdParams(BgNbdParams):
    """MBG/NBD (Batislam, Denizel & Filiztekin 2007): BG/NBD plus a chance of dropout right after the first
    purchase, so that a one-time buyer is not certainly alive. Its formulas are BG/NBD's with ``b+x-1`` ->
    ``b+x`` in the dropout odds and ``b+x`` -> ``b+x+1`` in the beta functions and the series::

        P(alive) = 1 / (1 + a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x))
        E[Y(t) | x, t_x, T] = (a+b+x)/(a-1) [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x+1; a+b+x; z)] P(alive)

    >>> m = MbgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
    >>> round(float(m.p_alive(x=0, t_x=0, T=38.86)), 3) < 1.0
    True
    """

    dropout_at_first_purchase: ClassVar[bool] = True
