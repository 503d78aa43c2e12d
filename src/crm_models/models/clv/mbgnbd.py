"""MBG/NBD: the modified BG/NBD purchase model (Batislam, Denizel & Filiztekin 2007).

Batislam, E. P., Denizel, M. & Filiztekin, A. (2007), "Empirical validation and comparison of
models for customer base analysis", International Journal of Research in Marketing 24(3),
201-209; conditional expectation from Wagner, U. & Hoppe, D. (2008), "Erratum on the MBG/NBD
Model", International Journal of Research in Marketing 25(3), 225-226.

The BG/NBD with one more dropout opportunity: a customer may also drop out right after her first
purchase, so a customer without repeat purchases need not be alive (P(alive) < 1 at frequency
0). Per customer, with lambda ~ Gamma(r, alpha) and p ~ Beta(a, b):

  L(lambda, p | x, t_x, T) = (1-p)^(x+1) lambda^x e^(-lambda T) + p (1-p)^x lambda^x e^(-lambda t_x)
  L = Gamma(r+x) alpha^r / Gamma(r) * B(a, b+x+1) / B(a, b)
      * [ (alpha+T)^-(r+x) + a/(b+x) * (alpha+t_x)^-(r+x) ]
  P(alive | x, t_x, T) = 1 / (1 + a/(b+x) * ((alpha+T)/(alpha+t_x))^(r+x))
  E[Y(t) | x, t_x, T] = P(alive) * (a+b+x)/(a-1)
      * [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x+1; a+b+x; t/(alpha+T+t))]
  E[X(t)] = b/(a-1) * [1 - (alpha/(alpha+t))^r 2F1(r, b+1; a+b; t/(alpha+t))]
  P(X(t) = n) = B(a, b+n+1)/B(a, b) NB(n; r, alpha/(alpha+t))
                + B(a+1, b+n)/B(a, b) P(NB(r, alpha/(alpha+t)) >= n)
  E[lambda | x, t_x, T] = (r+x) (P(alive)/(alpha+T) + (1-P(alive))/(alpha+t_x))

These are the BG/NBD expressions of ``bgnbd.py`` with d = 1 extra dropout opportunity, which is
how they are computed (same numerics, analytic gradient).
"""

from __future__ import annotations

from crm_models.models.clv.bgnbd import BetaGeo


class ModifiedBetaGeo(BetaGeo):
    """MBG/NBD (Batislam et al. 2007); parameters ``r, alpha, a, b``.

    Fit on a btyd summary with columns ``frequency``, ``recency``, ``T``; predictions as
    :class:`~crm_models.models.clv.bgnbd.BetaGeo` (``prob_alive`` is below 1 at frequency 0).
    """

    _extra_dropout = 1
