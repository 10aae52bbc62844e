"""Profiled (RE)ML for linear mixed models with one grouping factor, as lme4 fits them.

Model (Laird & Ware 1982): y_i = X_i beta + Z_i b_i + e_i, b_i ~ N(0, sigma^2 Lambda Lambda'),
e_i ~ N(0, sigma^2 I), with Lambda the lower-triangular relative Cholesky factor whose entries
theta (column-major, lme4's order) are the only parameters the optimizer sees.  beta and sigma^2
are profiled out, and the profiled deviance is (Bates, Maechler, Bolker & Walker 2015, J Stat
Softw 67(1), eqs. 34 and 41):

    REML: log|L_theta|^2 + log|R_X|^2 + (n - p) (1 + log(2 pi r^2 / (n - p)))
    ML:   log|L_theta|^2 + n (1 + log(2 pi r^2 / n))

with L_theta L_theta' = Lambda' Z'Z Lambda + I (block diagonal: one q x q block per subject),
R_X' R_X = X' V*^-1 X and r^2 the penalised residual sum of squares.  Everything is computed
from per-subject cross-products (Z_i'Z_i, Z_i'X_i, Z_i'y_i) with the Woodbury identity, so one
evaluation costs O(groups q^2 p) and the analytic gradient (derived in :meth:`LMMCore.deviance`)
about as much again.

The deviance is minimised over theta with box constraints diag(Lambda) >= 0 (lme4's bounds) by
L-BFGS-B (Byrd, Lu, Nocedal & Zhu 1995); other optimizers are tried only when the gradient test
at the returned point fails.  ``converged`` is the gradient test itself (lme4 ``checkConv``:
max over free parameters of min(|g|, |H^-1/2 g|) below a tolerance, at-bound parameters may
only push outwards), never an optimizer's message.  A fit with a diagonal element of Lambda
below 1e-4 is singular (lme4 ``isSingular``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

from hepatrial.analysis.ddf import Block

__all__ = ["CONV_TOL", "SINGULAR_TOL", "LMMCore", "LMMFit"]

#: gradient-test tolerance on the deviance scale (lme4 uses 2e-3; we are stricter)
CONV_TOL = 1e-4
#: a relative Cholesky diagonal below this is a boundary (singular) fit, as lme4 isSingular
SINGULAR_TOL = 1e-4

_ALIASES = {"lbfgs": "L-BFGS-B", "lbfgsb": "L-BFGS-B", "l-bfgs-b": "L-BFGS-B",
            "bfgs": "BFGS", "cg": "CG", "powell": "Powell", "nm": "Nelder-Mead",
            "nelder-mead": "Nelder-Mead"}
_BOUNDED = {"L-BFGS-B", "Powell", "Nelder-Mead"}


@dataclass
class LMMFit:
    """The optimum: theta, Lambda, beta, sigma^2, deviance and the convergence evidence."""

    theta: np.ndarray
    lam: np.ndarray
    beta: np.ndarray
    sigma2: float
    deviance: float
    converged: bool
    singular: bool
    gradient: np.ndarray
    max_grad: float
    max_scaled_grad: float
    optimizer: str
    trials: dict[str, dict[str, Any]] = field(default_factory=dict)


class LMMCore:
    """Sufficient statistics of one LMM and its profiled deviance, gradient and fit.

    ``groups`` are integer codes 0..G-1 with the rows already sorted by group.
    """

    def __init__(self, y: np.ndarray, x: np.ndarray, z: np.ndarray, groups: np.ndarray,
                 reml: bool = True) -> None:
        # work with the OLS residuals: GLS is linear in y and X b0 lies in the column space of
        # X, so beta(y) = beta(y - X b0) + b0 and the deviance is unchanged, while y'V^-1 y -
        # c'beta no longer cancels digits (sodium ~134 mmol/L: 3 digits lost otherwise, enough
        # to stall the optimizer at 5,000 participants)
        self.b0 = np.linalg.lstsq(x, y, rcond=None)[0]
        y = y - x @ self.b0
        self.y, self.x, self.z = y, x, z
        self.n, self.p = x.shape
        self.q = z.shape[1]
        self.reml = reml
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        self.starts = starts
        self.sizes = np.diff(np.r_[starts, self.n])
        self.n_groups = len(starts)
        red = np.add.reduceat
        self.ztz = red(z[:, :, None] * z[:, None, :], starts, axis=0)   # G q q
        self.ztx = red(z[:, :, None] * x[:, None, :], starts, axis=0)   # G q p
        self.zty = red(z * y[:, None], starts, axis=0)                  # G q
        self.xtx = x.T @ x
        self.xty = x.T @ y
        self.yty = float(y @ y)
        self.tri = [(i, j) for j in range(self.q) for i in range(j, self.q)]  # column-major
        self.lower = np.array([0.0 if i == j else -np.inf for i, j in self.tri])
        self.n_resid = self.n - self.p if reml else self.n

    # ----------------------------------------------------------------- parametrisation
    def lam(self, theta: np.ndarray) -> np.ndarray:
        """Lambda from theta (lower triangle, column-major)."""
        m = np.zeros((self.q, self.q))
        for t, (i, j) in zip(theta, self.tri, strict=True):
            m[i, j] = t
        return m

    def canonical(self, theta: np.ndarray) -> np.ndarray:
        """Flip columns of Lambda with a negative diagonal (Lambda Lambda' is unchanged)."""
        m = self.lam(theta)
        for j in range(self.q):
            if m[j, j] < 0:
                m[:, j] = -m[:, j]
        return np.array([m[i, j] for i, j in self.tri])

    def theta0(self) -> np.ndarray:
        """lme4's start: Lambda = I."""
        return np.array([1.0 if i == j else 0.0 for i, j in self.tri])

    # ----------------------------------------------------------------- core algebra
    def _pieces(self, theta: np.ndarray) -> dict[str, Any]:
        lam = self.lam(theta)
        s = self.ztz
        lts = np.einsum("ji,gjk->gik", lam, s)
        m = lts @ lam + np.eye(self.q)
        ch = np.linalg.cholesky(m)
        logdet_m = 2.0 * float(np.log(np.diagonal(ch, axis1=1, axis2=2)).sum())
        minv = np.linalg.inv(m)
        w = lam @ minv @ lam.T                                   # G q q: V*^-1 = I - Z W Z'
        wztx = w @ self.ztx                                      # G q p
        wzty = np.einsum("gij,gj->gi", w, self.zty)
        # einsum, not BLAS: multi-threaded BLAS on these thin products costs more CPU than it
        # saves (OpenBLAS threads spin between the optimizer's many small calls)
        a = self.xtx - np.einsum("gqp,gqs->ps", self.ztx, wztx)
        c = self.xty - np.einsum("gqp,gq->p", self.ztx, wzty)
        yvy = self.yty - float(np.einsum("gi,gi->", self.zty, wzty))
        ca = np.linalg.cholesky(a)
        beta_r = np.linalg.solve(ca.T, np.linalg.solve(ca, c))
        r2 = yvy - float(c @ beta_r)
        logdet_a = 2.0 * float(np.log(np.diag(ca)).sum())
        return {"lam": lam, "w": w, "a": a, "ca": ca, "beta": beta_r + self.b0,
                "beta_r": beta_r, "r2": r2,
                "logdet_m": logdet_m, "logdet_a": logdet_a}

    def _dpsi_mats(self, pc: dict[str, Any], sigma2: float | None) -> np.ndarray:
        """Gradient of the deviance with respect to Psi = Lambda Lambda' (q x q).

        sigma2=None: profiled deviance (factor n_resid / r^2 on the residual term), else the
        deviance at fixed sigma^2.  D = sum_i [Z_i'V_i^-1 Z_i - B_i A^-1 B_i'] - f sum_i u_i u_i'
        with B_i = Z_i'V_i^-1 X_i, u_i = Z_i'V_i^-1 (y_i - X_i beta) (REML; ML has no B term).
        """
        s, w = self.ztz, pc["w"]
        sw = s @ w
        c = s - sw @ s                                           # Z'V^-1 Z
        b = self.ztx - sw @ self.ztx                             # Z'V^-1 X
        zte = self.zty - self.ztx @ pc["beta_r"]
        u = zte - np.einsum("gij,gj->gi", sw, zte)
        d = c.sum(axis=0)
        if self.reml:
            bt = np.swapaxes(b, 1, 2)                            # G p q
            sol = np.linalg.solve(pc["a"][None, :, :], bt)       # A^-1 B'
            d = d - np.einsum("gqp,gpr->qr", b, sol)
        f = self.n_resid / pc["r2"] if sigma2 is None else 1.0 / sigma2
        d = d - f * np.einsum("gi,gj->ij", u, u)
        out: np.ndarray = (d + d.T) / 2.0
        return out

    def _dtheta(self, dpsi: np.ndarray, lam: np.ndarray) -> np.ndarray:
        g = 2.0 * dpsi @ lam
        return np.array([g[i, j] for i, j in self.tri])

    def deviance(self, theta: np.ndarray, grad: bool = True) -> tuple[float, np.ndarray]:
        """Profiled -2 log-likelihood (REML or ML) and its gradient in theta."""
        try:
            pc = self._pieces(theta)
        except np.linalg.LinAlgError:
            return math.inf, np.full(len(theta), np.nan)
        r2 = pc["r2"]
        if not r2 > 0:
            return math.inf, np.full(len(theta), np.nan)
        nr = self.n_resid
        dev = pc["logdet_m"] + nr * (1.0 + math.log(2.0 * math.pi * r2 / nr))
        if self.reml:
            dev += pc["logdet_a"]
        if not grad:
            return dev, np.empty(0)
        return dev, self._dtheta(self._dpsi_mats(pc, None), pc["lam"])

    def deviance_vp(self, varpar: np.ndarray) -> tuple[float, np.ndarray]:
        """-2 log L at (theta, sigma) (lmerTest ``devfun_vp``) and its gradient."""
        theta, sigma = varpar[:-1], float(varpar[-1])
        pc = self._pieces(theta)
        s2 = sigma * sigma
        nr = self.n_resid
        dev = pc["logdet_m"] + pc["r2"] / s2 + nr * math.log(2.0 * math.pi * s2)
        if self.reml:
            dev += pc["logdet_a"]
        g = self._dtheta(self._dpsi_mats(pc, s2), pc["lam"])
        gs = -2.0 * pc["r2"] / (s2 * sigma) + 2.0 * nr / sigma
        return dev, np.r_[g, gs]

    # ----------------------------------------------------------------- optimisation
    def _run(self, method: str, start: np.ndarray, gtol: float) -> optimize.OptimizeResult:
        bounds = [(lo if np.isfinite(lo) else None, None) for lo in self.lower]

        def fun(t: np.ndarray) -> tuple[float, np.ndarray]:
            return self.deviance(t)

        def fval(t: np.ndarray) -> float:
            return self.deviance(t, grad=False)[0]

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "L-BFGS-B":
                return optimize.minimize(fun, start, jac=True, method=method, bounds=bounds,
                                         options={"ftol": 1e-15, "gtol": gtol,
                                                  "maxiter": 2000, "maxls": 50})
            if method in ("BFGS", "CG"):
                return optimize.minimize(fun, start, jac=True, method=method,
                                         options={"gtol": gtol, "maxiter": 2000})
            if method == "Powell":
                return optimize.minimize(fval, start, method=method, bounds=bounds,
                                         options={"xtol": 1e-10, "ftol": 1e-14,
                                                  "maxfev": 20000})
            return optimize.minimize(fval, start, method=method, bounds=bounds,
                                     options={"xatol": 1e-10, "fatol": 1e-12,
                                              "maxfev": 20000, "adaptive": True})

    def hessian(self, theta: np.ndarray, free: np.ndarray) -> np.ndarray:
        """Hessian of the profiled deviance over the free components (central differences
        of the analytic gradient, one Richardson step)."""
        idx = np.flatnonzero(free)
        k = len(idx)
        h = np.zeros((k, k))

        def diff(step: np.ndarray) -> np.ndarray:
            out = np.zeros((k, k))
            for a, j in enumerate(idx):
                e = np.zeros(len(theta))
                e[j] = step[a]
                gp = self.deviance(theta + e)[1][idx]
                gm = self.deviance(theta - e)[1][idx]
                out[:, a] = (gp - gm) / (2.0 * step[a])
            return out

        step = 1e-4 * np.maximum(np.abs(theta[idx]), 0.1)
        h = (4.0 * diff(step / 2.0) - diff(step)) / 3.0
        out: np.ndarray = (h + h.T) / 2.0
        return out

    def gradient_test(self, theta: np.ndarray, tol: float = CONV_TOL
                      ) -> tuple[bool, np.ndarray, float, float, np.ndarray | None]:
        """lme4's ``checkConv`` gradient test on the projected gradient, plus a second-order
        check on the boundary.

        A diagonal of Lambda at 0 whose column is otherwise 0 always has gradient 0 there (the
        deviance is even in it), so a zero gradient on the bound can be a saddle: the Hessian
        over the free and zero-gradient bound parameters must also be positive semi-definite.
        Returns (passed, gradient, max |projected g|, max min(|g|, |H^-1/2 g|), a direction of
        negative curvature or None).
        """
        _, g = self.deviance(theta)
        if not np.all(np.isfinite(g)):
            return False, g, math.inf, math.inf, None
        at_bound = np.isfinite(self.lower) & (theta <= self.lower + 1e-12)
        pg = np.where(at_bound & (g >= 0), 0.0, g)  # minimum on the bound: g points outwards
        free = ~at_bound
        gmax = float(np.max(np.abs(pg))) if len(pg) else 0.0
        scaled = gmax
        flat = free | (at_bound & (np.abs(g) < tol))
        neg_dir: np.ndarray | None = None
        try:
            h = self.hessian(theta, flat)
        except np.linalg.LinAlgError:
            h = None
        if h is not None and h.size:
            ev, vec = np.linalg.eigh(h)
            if ev[0] < -max(1e-8, 1e-6 * float(np.max(np.abs(ev)))):
                neg_dir = np.zeros(len(theta))
                neg_dir[np.flatnonzero(flat)] = vec[:, 0]
            fi = free[flat]
            if fi.any():
                try:
                    ch = np.linalg.cholesky(h[np.ix_(fi, fi)])
                    sg = np.linalg.solve(ch, pg[free])
                    scaled = float(np.max(np.minimum(np.abs(sg), np.abs(pg[free]))))
                    if (~free).any():
                        scaled = max(scaled, float(np.max(np.abs(pg[~free]))))
                except np.linalg.LinAlgError:
                    scaled = gmax  # not positive definite: the unscaled gradient decides
        passed = bool(min(scaled, gmax) < tol) and neg_dir is None
        return passed, g, gmax, scaled, neg_dir

    def _escape(self, theta: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """A point along a direction of negative curvature with a lower deviance."""
        f0 = self.deviance(theta, grad=False)[0]
        best, fb = theta, f0
        for step in (1e-2, 3e-2, 0.1, 0.3, 1.0):
            for sgn in (1.0, -1.0):
                t = self.canonical(theta + sgn * step * direction)
                f = self.deviance(t, grad=False)[0]
                if f < fb:
                    best, fb = t, f
        return best

    def fit(self, optimizers: Sequence[str] = ("lbfgs", "nm", "powell"), gtol: float = 1e-9,
            polish: bool = True, start: np.ndarray | None = None) -> LMMFit:
        """Minimise the profiled deviance; fall back to the next optimizer only when the
        gradient test fails.  The best deviance wins; ``converged`` is its gradient test."""
        methods = []
        for name in optimizers:
            key = _ALIASES.get(name.lower())
            if key is None:
                raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(_ALIASES)}")
            methods.append((name, key))
        if not methods:
            raise ValueError("no optimizer given")
        trials: dict[str, dict[str, Any]] = {}
        best_t = self.theta0() if start is None else np.asarray(start, dtype=float)
        best_f = self.deviance(best_t, grad=False)[0]
        best_name = "start"
        for name, method in methods:
            t = best_t
            nfev = 0
            for _ in range(4):  # a saddle on the boundary: step off it and go again
                res = self._run(method, t, gtol)
                nfev += int(getattr(res, "nfev", 0))
                t = self.canonical(np.asarray(res.x, dtype=float))
                if method != "L-BFGS-B" and polish:
                    res2 = self._run("L-BFGS-B", t, gtol)
                    nfev += int(getattr(res2, "nfev", 0))
                    t2 = self.canonical(np.asarray(res2.x, dtype=float))
                    if self.deviance(t2, grad=False)[0] <= self.deviance(t, grad=False)[0]:
                        t = t2
                ok, _, gmax, _, neg = self.gradient_test(t)
                if neg is None:
                    break
                t = self._escape(t, neg)
            f = self.deviance(t, grad=False)[0]
            trials[name] = {"deviance": f if math.isfinite(f) else None, "passed": ok,
                            "max_grad": gmax, "n_evaluations": nfev}
            if math.isfinite(f) and (f < best_f or best_name == "start"):
                best_t, best_f, best_name = t, f, name
            if ok and best_name == name:
                break
        ok, g, gmax, sc, _ = self.gradient_test(best_t)
        pc = self._pieces(best_t)
        sigma2 = pc["r2"] / self.n_resid
        lam = pc["lam"]
        singular = bool(np.any(np.abs(np.diag(lam)) < SINGULAR_TOL))
        return LMMFit(theta=best_t, lam=lam, beta=pc["beta"], sigma2=sigma2, deviance=best_f,
                      converged=ok, singular=singular, gradient=g, max_grad=gmax,
                      max_scaled_grad=sc, optimizer=best_name, trials=trials)

    # ----------------------------------------------------------------- inference pieces
    def vcov(self, fit: LMMFit) -> np.ndarray:
        """GLS covariance sigma^2 (X' V*^-1 X)^-1 (R ``vcov``)."""
        a = self._pieces(fit.theta)["a"]
        out: np.ndarray = fit.sigma2 * np.linalg.inv(a)
        return (out + out.T) / 2.0

    def satterthwaite_pieces(self, fit: LMMFit) -> tuple[list[np.ndarray], np.ndarray]:
        """Jacobian of vcov(beta) and the Hessian of -2 log L over (theta, sigma) (lmerTest)."""
        pc = self._pieces(fit.theta)
        lam, w, a = pc["lam"], pc["w"], pc["a"]
        ainv = np.linalg.inv(a)
        s = self.ztz
        b = self.ztx - (s @ w) @ self.ztx                        # G q p
        sigma = math.sqrt(fit.sigma2)
        jac = []
        for i, j in self.tri:
            e = np.zeros((self.q, self.q))
            e[i, j] = 1.0
            dpsi = e @ lam.T + lam @ e.T
            da = np.einsum("gqp,qr,grs->ps", b, dpsi, b)         # -dA/dtheta
            jac.append(fit.sigma2 * ainv @ da @ ainv)
        jac.append(2.0 * sigma * ainv)
        vp = np.r_[fit.theta, sigma]
        k = len(vp)

        def diff(step: np.ndarray) -> np.ndarray:
            out = np.zeros((k, k))
            for c in range(k):
                e = np.zeros(k)
                e[c] = step[c]
                out[:, c] = (self.deviance_vp(vp + e)[1] - self.deviance_vp(vp - e)[1]) / (
                    2.0 * step[c])
            return out

        step = 1e-4 * np.maximum(np.abs(vp), 0.1)
        h = (4.0 * diff(step / 2.0) - diff(step)) / 3.0
        return jac, (h + h.T) / 2.0

    def kr_blocks(self, fit: LMMFit) -> list[Block]:
        """Dense per-subject blocks with pbkrtest's linear parametrisation: the unique entries
        of G = sigma^2 Psi (lower triangle) and sigma^2; dSigma_k = Z E_k Z' and I."""
        psi = fit.lam @ fit.lam.T
        blocks = []
        gid = np.repeat(np.arange(self.n_groups), self.sizes)
        pos = np.arange(self.n) - np.repeat(self.starts, self.sizes)
        for m in np.unique(self.sizes):
            sel = np.flatnonzero(self.sizes == m)
            rows = np.isin(gid, sel)
            nb = len(sel)
            xb = np.zeros((nb, m, self.p))
            zb = np.zeros((nb, m, self.q))
            bi = np.searchsorted(sel, gid[rows])
            xb[bi, pos[rows]] = self.x[rows]
            zb[bi, pos[rows]] = self.z[rows]
            zt = np.swapaxes(zb, 1, 2)
            sig = fit.sigma2 * (np.eye(m) + zb @ psi @ zt)
            ds = []
            for i, j in self.tri:
                e = np.zeros((self.q, self.q))
                e[i, j] = e[j, i] = 1.0
                ds.append(zb @ e @ zt)
            ds.append(np.eye(m))
            blocks.append(Block(x=xb, sigma=sig, dsigma=ds))
        return blocks
