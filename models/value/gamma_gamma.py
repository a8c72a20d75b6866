"""The Gamma-Gamma model of spend per order (Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value curves").

A customer's order values are ``z_i ~ Gamma(p, nu)`` (shape ``p``, rate ``nu``), so the customer's mean order
value is ``p/nu``; across customers ``nu ~ Gamma(q, gamma)``. Spend is assumed independent of the purchase
process, so it multiplies a BG/NBD purchase forecast. The data per customer is ``x`` orders and their mean
value ``zbar`` (FHL use repeat orders only; :mod:`models.value.clv` uses every order, see there why).

Formulas (FHL 2005 and Fader & Hardie's note "The Gamma-Gamma model of monetary value"):

* density of the mean of ``x`` orders::

    f(zbar | p, q, gamma, x) = G(px+q) / (G(px) G(q)) * gamma^q x^(px) zbar^(px-1) / (gamma + x zbar)^(px+q)

  fitted by maximum likelihood in logs (``gammaln``) with its analytic gradient;
* expected order value of a customer with ``x`` orders averaging ``zbar`` (the posterior mean of ``p/nu``,
  a weighted mean of the population mean ``p gamma/(q-1)`` and the customer's own ``zbar``)::

    E[Z | x, zbar] = p (gamma + x zbar) / (p x + q - 1)          (needs q > 1; x = 0 gives p gamma/(q-1))

>>> cdnow = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)   # the paper's CDNOW fit, in 1997 USD
>>> round(cdnow.population_mean, 2)
35.22
>>> round(float(cdnow.expected_order_value(x=2, zbar=22.35)), 2)
24.66
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import digamma, gammaln

from models.value.fitting import FitError, FloatArray, minimise_log_params

ArrayLike = npt.ArrayLike


@dataclass(frozen=True, slots=True, kw_only=True)
class GammaGammaParams:
    """Gamma-Gamma parameters: order value ``~ Gamma(p, nu)``, ``nu ~ Gamma(q, gamma)``; ``gamma`` in money.

    >>> GammaGammaParams(p=6.0, q=4.0, gamma=40.0).population_mean
    80.0
    """

    p: float
    q: float
    gamma: float

    def __post_init__(self) -> None:
        if not all(np.isfinite(v) and v > 0 for v in (self.p, self.q, self.gamma)):
            msg = f"Gamma-Gamma parameters must be finite and > 0, got {self}"
            raise ValueError(msg)

    def as_array(self) -> FloatArray:
        return np.array([self.p, self.q, self.gamma], dtype=np.float64)

    @property
    def population_mean(self) -> float:
        """Mean order value of a customer about whom nothing is known, ``p gamma / (q - 1)`` (inf if q <= 1)."""
        return self.p * self.gamma / (self.q - 1.0) if self.q > 1.0 else float("inf")

    def log_likelihood(self, x: ArrayLike, zbar: ArrayLike) -> FloatArray:
        """Per-customer log density of ``zbar`` given ``x`` orders (customers with ``x >= 1``, ``zbar > 0``)."""
        return _log_likelihood(self.as_array(), *_summary(x, zbar))[0]

    def expected_order_value(self, x: ArrayLike, zbar: ArrayLike) -> FloatArray:
        """``E[Z | x, zbar]``; customers with ``x = 0`` get the population mean.

        When ``q <= 1`` the population mean is infinite; then a customer's own ``zbar`` is used (and the
        prior's mean for ``x = 0``), so that a degenerate fit cannot produce infinite revenue.
        """
        xs = np.asarray(x, dtype=np.float64)
        zs = np.asarray(zbar, dtype=np.float64)
        if self.q <= 1.0:
            return np.asarray(np.where(xs > 0, zs, self.p * self.gamma), dtype=np.float64)
        return np.asarray(self.p * (self.gamma + xs * zs) / (self.p * xs + self.q - 1.0), dtype=np.float64)

    @classmethod
    def fit(
        cls,
        x: ArrayLike,
        zbar: ArrayLike,
        *,
        init: GammaGammaParams | None = None,
        prior: GammaGammaParams | None = None,
        penalizer: float = 0.0,
    ) -> GammaGammaParams:
        """Maximum likelihood on customers with ``x >= 1`` and ``zbar > 0``, from ``init``; MAP with
        ``penalizer > 0`` (log-normal prior centred on ``prior``, default ``init``).

        >>> import numpy as np
        >>> fit = GammaGammaParams.fit(np.array([1, 2, 3, 1, 4]), np.array([50.0, 80.0, 65.0, 120.0, 70.0]))
        >>> fit.population_mean > 0
        True
        """
        xs, zs = _summary(x, zbar)
        keep = (xs >= 1) & (zs > 0)
        xs, zs = xs[keep], zs[keep]
        if xs.size == 0:
            msg = "Gamma-Gamma needs at least one customer with an order of positive value"
            raise FitError(msg)
        if init is None:
            # Moment-free start: p = 1, q = 2 put the population mean at gamma, so gamma = mean spend.
            init = cls(p=1.0, q=2.0, gamma=float(np.mean(zs)))

        def objective(u: FloatArray) -> tuple[float, FloatArray]:
            theta = np.exp(u)
            ll, grad = _log_likelihood(theta, xs, zs)
            return -float(np.mean(ll)), -np.mean(grad, axis=1) * theta

        centre = None if prior is None else np.log(prior.as_array())
        u = minimise_log_params(objective, np.log(init.as_array()), penalty=penalizer / xs.size, prior=centre)
        p, q, gamma = (float(v) for v in np.exp(u))
        return cls(p=p, q=q, gamma=gamma)


def _summary(x: ArrayLike, zbar: ArrayLike) -> tuple[FloatArray, FloatArray]:
    xs = np.asarray(x, dtype=np.float64)
    zs = np.asarray(zbar, dtype=np.float64)
    if np.any(xs < 0) or np.any(zs < 0):
        msg = "a Gamma-Gamma summary needs x >= 0 and zbar >= 0"
        raise ValueError(msg)
    return xs, zs


def _log_likelihood(theta: FloatArray, x: FloatArray, z: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Log density per customer and its gradient in ``(p, q, gamma)`` (shape ``(3, n)``)."""
    p, q, gamma = (float(v) for v in theta)
    px = p * x
    log_total = np.log(gamma + x * z)
    ll = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(gamma)
        + px * np.log(x)
        + (px - 1.0) * np.log(z)
        - (px + q) * log_total
    )
    d_p = x * (digamma(px + q) - digamma(px) + np.log(x) + np.log(z) - log_total)
    d_q = digamma(px + q) - digamma(q) + np.log(gamma) - log_total
    d_gamma = q / gamma - (px + q) / (gamma + x * z)
    return np.asarray(ll, dtype=np.float64), np.vstack([d_p, d_q, d_gamma])
