"""Maximum likelihood on log parameters, shared by the BG/NBD and Gamma-Gamma fits.

Both models have strictly positive parameters, so they are fitted as ``theta = exp(u)`` with ``u``
unconstrained (bounded to ``[-20, 20]`` only to keep a wild line search finite), by L-BFGS-B on the
mean negative log-likelihood with its analytic gradient. An optional penalty ``penalty * ||u - u_prior||^2``
turns the fit into a MAP estimate under a log-normal prior centred on the prior parameters, which keeps a
fit on a handful of customers near the prior instead of running off to a boundary. The model fits pass
``penalty = penalizer / n`` for ``n`` customers, so ``penalizer`` is the prior's own precision, whatever the
sample size: log-parameters ~ N(log prior, 1 / (2 penalizer)); 0.5 is a unit-variance log-normal prior.

>>> import numpy as np
>>> def nll(u):  # -log N(2 | mu=exp(u), 1), minimised at exp(u) = 2
...     mu = np.exp(u)
...     return float(0.5 * (2 - mu[0]) ** 2), np.array([-(2 - mu[0]) * mu[0]])
>>> round(float(np.exp(minimise_log_params(nll, np.array([1.0]))[0])), 6)
2.0
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from schemas.errors import RevstreamError

FloatArray = npt.NDArray[np.float64]
Objective = Callable[[FloatArray], tuple[float, FloatArray]]

LOG_BOUND = 20.0


class FitError(RevstreamError):
    """A model could not be fitted: too little data, or the optimiser ended at a non-finite point."""


def minimise_log_params(
    objective: Objective,
    start: FloatArray,
    *,
    penalty: float = 0.0,
    prior: FloatArray | None = None,
) -> FloatArray:
    """Minimise ``objective(u) + penalty * ||u - prior||^2`` over log parameters ``u``; return the argmin.

    ``objective`` returns the value and its gradient in ``u``. ``prior`` defaults to ``start``.
    """
    centre = start if prior is None else prior

    def penalised(u: FloatArray) -> tuple[float, FloatArray]:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            value, grad = objective(u)
        if not np.isfinite(value) or not np.all(np.isfinite(grad)):
            # Tell the line search this point is bad; L-BFGS-B backs off.
            return 1e300, np.zeros_like(u)
        diff = u - centre
        return value + penalty * float(diff @ diff), grad + 2.0 * penalty * diff

    result = minimize(
        penalised,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=[(-LOG_BOUND, LOG_BOUND)] * len(start),
        options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10},
    )
    u = np.asarray(result.x, dtype=np.float64)
    if not np.all(np.isfinite(u)) or not np.isfinite(result.fun) or result.fun >= 1e300:
        msg = f"maximum likelihood fit failed: {result.message}"
        raise FitError(msg)
    return u
