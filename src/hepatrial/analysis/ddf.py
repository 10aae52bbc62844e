"""Small-sample inference for fixed effects of Gaussian (mixed / marginal) linear models.

Denominator degrees of freedom for t and F tests of ``L beta = 0``:

* **Satterthwaite** (Satterthwaite 1946, Biometrics Bull 2:110; Giesbrecht & Burns 1985,
  Biometrics 41:477; multi-df F by Fai & Cornelius 1996, J Stat Comput Simul 54:363), as R
  ``lmerTest`` computes it (Kuznetsova, Brockhoff & Christensen 2017, J Stat Softw 82(13)):
  ``nu = 2 (l' Phi l)^2 / (g' A g)`` with ``g_k = l' dPhi/dphi_k l`` and ``A`` the asymptotic
  covariance of the variance parameters (2 x the pseudo-inverse of the Hessian of the
  -2 log-likelihood, eigenvalues <= 1e-8 dropped, as ``lmerTest:::as_lmerModLT``).
* **Kenward-Roger** (Kenward & Roger 1997, Biometrics 53:983; the 2009 correction for
  non-linear covariance structures, CSDA 53:2583), as R ``pbkrtest`` computes it (Halekoh &
  Hojsgaard 2014, J Stat Softw 59(9); ``vcovAdj``, ``Lb_ddf``, ``KRmodcomp``): the adjusted
  covariance ``Phi_A = Phi + 2 Phi U Phi`` and the scaled F statistic with its ddf.  With a
  covariance linear in its parameters (``Sigma = sum_k tau_k G_k``, as pbkrtest uses for lmer
  fits and SAS for UN/CS/TOEP) the second-derivative term R_ij vanishes; for non-linear
  structures (AR(1)) pass ``d2sigma`` and it is included (SAS ``ddfm=kr``, R ``mmrm``
  "Kenward-Roger").

The covariance of the data is block diagonal over subjects.  Each :class:`Block` holds the
fixed-effects design of subjects with the same number of observations (``x``: subjects x m x p)
and either one covariance shared by all of them (``m x m``: marginal models, where subjects
with the same visit pattern share Sigma) or one per subject (``subjects x m x m``: mixed models).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "Block",
    "Inference",
    "KRPieces",
    "kenward_roger",
    "kr_ddf",
    "kr_ftest",
    "satterthwaite_df",
    "satterthwaite_ftest",
]

EIG_TOL = 1e-8  # lmerTest: Hessian eigenvalues within +-1e-8 are dropped


@dataclass
class Block:
    """Subjects with the same number of observations ``m``.

    ``x`` is (subjects, m, p).  ``sigma`` is (m, m) shared by all subjects of the block, or
    (subjects, m, m).  ``dsigma[k]`` (same shape rules) is dSigma/dphi_k; ``d2sigma[(k, l)]``
    the second derivatives (only the non-zero ones; non-linear structures).
    """

    x: np.ndarray
    sigma: np.ndarray
    dsigma: list[np.ndarray]
    d2sigma: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    _xx: np.ndarray | None = None

    @property
    def shared(self) -> bool:
        return self.sigma.ndim == 2

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def xx(self) -> np.ndarray:
        """sum_i x_i (outer) x_i as (m, p, m, p): lets x'Mx for a shared M cost m^2 p^2."""
        if self._xx is None:
            self._xx = np.einsum("imp,inq->mpnq", self.x, self.x, optimize=True)
        return self._xx

    def xmx(self, m: np.ndarray) -> np.ndarray:
        """sum_i x_i' M_i x_i (p x p) for M shared (m, m) or per subject (n, m, m)."""
        if m.ndim == 2:
            return np.einsum("mpnq,mn->pq", self.xx(), m, optimize=True)
        mx = m @ self.x
        return np.einsum("imp,imq->pq", self.x, mx, optimize=True)

    def trace_sum(self, m: np.ndarray) -> float:
        """sum_i tr(M_i)."""
        if m.ndim == 2:
            return float(self.n * np.trace(m))
        return float(np.einsum("imm->", m))


def _sym(a: np.ndarray) -> np.ndarray:
    out: np.ndarray = (a + a.T) / 2.0
    return out


def _inv_spd(a: np.ndarray) -> np.ndarray:
    """Inverse of a (batch of) symmetric positive-definite matrices via Cholesky."""
    c = np.linalg.cholesky(a)
    eye = np.broadcast_to(np.eye(a.shape[-1]), a.shape)
    ci = np.linalg.solve(c, eye)
    out: np.ndarray = np.swapaxes(ci, -1, -2) @ ci
    return out


@dataclass
class KRPieces:
    """What the KR ddf needs after the adjustment: ``P_k``, ``W`` and the two covariances."""

    phi: np.ndarray
    phi_adj: np.ndarray
    p_list: list[np.ndarray]
    w: np.ndarray
    condition: float


def kenward_roger(blocks: Sequence[Block], phi: np.ndarray) -> KRPieces:
    """Kenward-Roger adjusted covariance of beta-hat (pbkrtest ``vcovAdj_internal``).

    ``phi`` is (X' Sigma^-1 X)^-1.  Returns Phi_A = Phi + 2 Phi U Phi with
    U = sum_ij W_ij (Q_ij - P_i Phi P_j - R_ij / 4), W = 2 I_E^-1 (I_E the REML expected
    information: tr(Sigma^-1 G_i Sigma^-1 G_j) - 2 tr(Phi Q_ij) + tr(Phi P_i Phi P_j)),
    P_i = -X' Sigma^-1 G_i Sigma^-1 X, Q_ij = X' Sigma^-1 G_i Sigma^-1 G_j Sigma^-1 X,
    R_ij = X' Sigma^-1 (d2 Sigma / dphi_i dphi_j) Sigma^-1 X.
    """
    k = len(blocks[0].dsigma)
    p = phi.shape[0]
    pm = [np.zeros((p, p)) for _ in range(k)]
    q = {(i, j): np.zeros((p, p)) for i in range(k) for j in range(i, k)}
    r = {(i, j): np.zeros((p, p)) for i in range(k) for j in range(i, k)}
    ktr = np.zeros((k, k))
    for b in blocks:
        si = _inv_spd(b.sigma)
        h = [g @ si for g in b.dsigma]  # G_k Sigma^-1
        sh = [si @ g for g in b.dsigma]  # Sigma^-1 G_k
        for i in range(k):
            pm[i] -= b.xmx(sh[i] @ si)
            for j in range(i, k):
                q[(i, j)] += b.xmx(sh[i] @ sh[j] @ si)
                ktr[i, j] += b.trace_sum(h[i] @ h[j])
        for (i, j), d2 in b.d2sigma.items():
            key = (min(i, j), max(i, j))
            r[key] += b.xmx(si @ d2 @ si)
    pm = [_sym(a) for a in pm]
    ie = np.zeros((k, k))
    for i in range(k):
        phi_pi = phi @ pm[i]
        for j in range(i, k):
            ie[i, j] = ie[j, i] = (ktr[i, j] - 2.0 * float(np.sum(phi * q[(i, j)]))
                                   + float(np.sum(phi_pi * (pm[j] @ phi))))
    ev = np.linalg.eigvalsh(ie)
    cond = float(np.min(np.abs(ev)))
    w = 2.0 * (np.linalg.inv(ie) if cond > 1e-10 else np.linalg.pinv(ie))
    w = _sym(w)
    u = np.zeros((p, p))
    for i in range(k):
        for j in range(i, k):
            term = q[(i, j)] - pm[i] @ phi @ pm[j] - 0.25 * r[(i, j)]
            if i == j:
                u += w[i, i] * term
            else:
                u += w[i, j] * (term + term.T)
    phi_adj = _sym(phi + 2.0 * phi @ u @ phi)
    return KRPieces(phi=phi, phi_adj=phi_adj, p_list=pm, w=w, condition=cond)


def _div_zero(x: float, y: float, tol: float = 1e-14) -> float:
    if abs(x) < tol and abs(y) < tol:
        return 1.0
    return x / y


def _kr_core(lmat: np.ndarray, kr: KRPieces) -> tuple[float, float, int]:
    """A2-based ddf and F scaling (pbkrtest ``.KR_adjust``); returns (ddf, F.scaling, q)."""
    phi = kr.phi
    theta = lmat.T @ np.linalg.solve(lmat @ phi @ lmat.T, lmat)
    tphi = theta @ phi
    k = len(kr.p_list)
    us = [tphi @ pk @ phi for pk in kr.p_list]
    a1 = a2 = 0.0
    for i in range(k):
        for j in range(i, k):
            e = 1.0 if i == j else 2.0
            a1 += e * kr.w[i, j] * float(np.trace(us[i]) * np.trace(us[j]))
            a2 += e * kr.w[i, j] * float(np.sum(us[i] * us[j].T))
    q = int(np.linalg.matrix_rank(lmat))
    b = (a1 + 6.0 * a2) / (2.0 * q)
    g = ((q + 1) * a1 - (q + 4) * a2) / ((q + 2) * a2)
    den = 3 * q + 2 * (1 - g)
    c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
    v0 = 1 + c1 * b
    v1 = 1 - c2 * b
    v2 = 1 - c3 * b
    if abs(v0) < 1e-10:
        v0 = 0.0
    rho = (1.0 / q) * _div_zero(1 - a2 / q, v1) ** 2 * v0 / v2
    ddf = 4 + (q + 2) / (q * rho - 1)
    scaling = 1.0 if abs(ddf - 2) < 1e-2 else ddf * (1 - a2 / q) / (ddf - 2)
    return float(ddf), float(scaling), q


def kr_ddf(l_vec: np.ndarray, kr: KRPieces) -> float:
    """Kenward-Roger ddf of one contrast (pbkrtest ``Lb_ddf``, as lmerTest's KR t test)."""
    return _kr_core(np.atleast_2d(l_vec), kr)[0]


def kr_ftest(lmat: np.ndarray, beta: np.ndarray, kr: KRPieces) -> dict[str, float]:
    """Kenward-Roger F test of ``L beta = 0`` (pbkrtest ``KRmodcomp``): scaled F, ndf, ddf, p."""
    lmat = np.atleast_2d(lmat)
    ddf, scaling, q = _kr_core(lmat, kr)
    lb = lmat @ beta
    wald = float(lb @ np.linalg.solve(lmat @ kr.phi_adj @ lmat.T, lb))
    f = scaling * wald / q
    return {"F": f, "ndf": float(q), "ddf": ddf, "p": float(stats.f.sf(f, q, ddf)),
            "F_unscaled": wald / q, "F_scaling": scaling}


def varpar_cov(hessian: np.ndarray) -> np.ndarray:
    """2 x pseudo-inverse of the Hessian of -2 log L over the variance parameters (lmerTest)."""
    ev, vec = np.linalg.eigh(_sym(hessian))
    pos = ev > EIG_TOL
    out: np.ndarray = 2.0 * (vec[:, pos] / ev[pos]) @ vec[:, pos].T
    return out


def satterthwaite_df(l_vec: np.ndarray, phi: np.ndarray, jac: Sequence[np.ndarray],
                     a_cov: np.ndarray) -> float:
    """Satterthwaite df of ``l' beta``: 2 (l' Phi l)^2 / (g' A g), g_k = l' dPhi_k l."""
    var = float(l_vec @ phi @ l_vec)
    g = np.array([float(l_vec @ jk @ l_vec) for jk in jac])
    den = float(g @ a_cov @ g)
    return 2.0 * var * var / den if den > 0 else math.inf


def satterthwaite_ftest(lmat: np.ndarray, beta: np.ndarray, phi: np.ndarray,
                        jac: Sequence[np.ndarray], a_cov: np.ndarray,
                        eps: float = math.sqrt(np.finfo(float).eps)) -> dict[str, float]:
    """Multi-df Satterthwaite F test (lmerTest ``contestMD``; Fai & Cornelius 1996)."""
    lmat = np.atleast_2d(lmat)
    vl = lmat @ phi @ lmat.T
    d, pvec = np.linalg.eigh(_sym(vl))
    order = np.argsort(d)[::-1]
    d, pvec = d[order], pvec[:, order]
    tol = max(eps * d[0], 0.0)
    pos = d > tol
    q = int(pos.sum())
    ptl = (pvec.T @ lmat)[:q]
    t2 = (ptl @ beta) ** 2 / d[:q]
    f = float(t2.sum() / q)
    nu = np.array([satterthwaite_df(ptl[m], phi, jac, a_cov) for m in range(q)])
    if q == 1:
        ddf = float(nu[0])
    elif np.all(np.abs(np.diff(nu)) < 1e-8):
        ddf = float(nu.mean())
    elif np.any(nu <= 2):
        ddf = 2.0
    else:
        e = float(np.sum(nu / (nu - 2)))
        ddf = 2 * e / (e - q)
    return {"F": f, "ndf": float(q), "ddf": ddf, "p": float(stats.f.sf(f, q, ddf))}


@dataclass
class Inference:
    """Everything needed to test any contrast of a fitted model after the fit.

    ``method`` is "kenward-roger", "satterthwaite" or "wald".  ``phi`` is the model-based
    (GLS) covariance of beta-hat, ``kr`` the Kenward-Roger pieces (None unless computed),
    ``jac``/``a_cov`` the Satterthwaite pieces (None unless computed).
    """

    method: str
    beta: np.ndarray
    phi: np.ndarray
    names: list[str]
    kr: KRPieces | None = None
    jac: list[np.ndarray] | None = None
    a_cov: np.ndarray | None = None
    confidence: float = 0.95

    def vcov(self) -> np.ndarray:
        """Covariance used for tests: KR-adjusted for Kenward-Roger, else Phi."""
        if self.method == "kenward-roger":
            assert self.kr is not None
            return self.kr.phi_adj
        return self.phi

    def contrast(self, l_vec: np.ndarray) -> dict[str, float]:
        """t (or z) test and CI of ``l' beta``: estimate, se, df, statistic, p, ci_low/high."""
        l_vec = np.asarray(l_vec, dtype=float)
        est = float(l_vec @ self.beta)
        se = math.sqrt(max(float(l_vec @ self.vcov() @ l_vec), 0.0))
        if self.method == "kenward-roger":
            assert self.kr is not None
            df = kr_ddf(l_vec, self.kr)
        elif self.method == "satterthwaite":
            assert self.jac is not None and self.a_cov is not None
            df = satterthwaite_df(l_vec, self.phi, self.jac, self.a_cov)
        else:
            df = math.inf
        stat = est / se if se > 0 else math.nan
        alpha2 = 0.5 + self.confidence / 2.0
        if math.isinf(df):
            p = float(2.0 * stats.norm.sf(abs(stat)))
            crit = float(stats.norm.ppf(alpha2))
        else:
            p = float(2.0 * stats.t.sf(abs(stat), df))
            crit = float(stats.t.ppf(alpha2, df))
        return {"estimate": est, "se": se, "df": df, "statistic": stat, "p": p,
                "ci_low": est - crit * se, "ci_high": est + crit * se}

    def ftest(self, lmat: np.ndarray) -> dict[str, Any]:
        """F test of ``L beta = 0`` by the inference method (Wald: chi-square / q, ddf inf)."""
        lmat = np.atleast_2d(np.asarray(lmat, dtype=float))
        if self.method == "kenward-roger":
            assert self.kr is not None
            out: dict[str, Any] = kr_ftest(lmat, self.beta, self.kr)
        elif self.method == "satterthwaite":
            assert self.jac is not None and self.a_cov is not None
            out = satterthwaite_ftest(lmat, self.beta, self.phi, self.jac, self.a_cov)
        else:
            lb = lmat @ self.beta
            q = int(np.linalg.matrix_rank(lmat))
            chi2 = float(lb @ np.linalg.solve(lmat @ self.phi @ lmat.T, lb))
            out = {"F": chi2 / q, "ndf": float(q), "ddf": math.inf,
                   "p": float(stats.chi2.sf(chi2, q))}
        out["method"] = self.method
        return out
