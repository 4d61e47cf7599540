"""Log-likelihoods of the BG/NBD and Gamma-Gamma models, compiled, with plain-Python twins.

**BG/NBD** (Fader, Hardie & Lee 2005, "Counting your customers the easy way"). A customer buys
as a Poisson process with rate λ ~ Gamma(r, α) (shape r, rate α) and, after each repeat
purchase, drops out for good with probability p ~ Beta(a, b). From the first purchase at time 0
to the end of observation T we see x repeat purchases, the last at t_x. The likelihood is

    L = A₁ · A₂ · (A₃ + [x > 0] · A₄)
    ln A₁ = ln Γ(r + x) − ln Γ(r) + r ln α
    ln A₂ = ln Γ(a + b) + ln Γ(b + x) − ln Γ(b) − ln Γ(a + b + x)
    ln A₃ = −(r + x) ln(α + T)                                   (still alive at T)
    ln A₄ = ln a − ln(b + x − 1) − (r + x) ln(α + t_x)           (dropped out after t_x)

and is computed in logs throughout: ``A₃`` and ``A₄`` are added by log-sum-exp, since either can
underflow on its own for a customer with hundreds of purchases.

**Gamma-Gamma** (Fader, Hardie & Lee 2005, "RFM and CLV"). Each of a customer's transaction
values is Gamma(p, ν) and ν ~ Gamma(q, v) across customers; the mean m of x transactions has
density

    f(m | x) = Γ(px + q) / (Γ(px) Γ(q)) · v^q · m^(px − 1) · x^(px) / (v + m x)^(px + q).

The fitting kernels (``*_grad``) return the weighted sum of the log-likelihood and its gradient
with respect to the *logarithms* of the parameters, which is what the optimiser moves: that keeps
the parameters positive without constraints and puts them on comparable scales. The gradients are
analytic (digamma for the Γ terms): a finite-difference gradient costs five likelihood passes
instead of one and is less accurate where the surface is flat. For BG/NBD the Γ and ψ terms depend
on x only, so they are tabulated once per pass for x = 0 … max(x), which is why the fitting
kernels require whole-number x (the fitting functions check it).

The ``*_py`` twins compute the per-customer log-likelihood with the same formulas and the
``math`` module; the tests hold the kernels to them and the gradients to finite differences.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from engine.equity.clv_special import digamma


@njit(cache=True, nogil=True, inline="always")
def _log_add_exp(u: float, v: float) -> float:
    hi = max(u, v)
    return hi + math.log1p(math.exp(min(u, v) - hi))


@njit(cache=True, nogil=True)
def bgnbd_log_likelihood(
    x: np.ndarray, t_x: np.ndarray, age: np.ndarray, r: float, alpha: float, a: float, b: float
) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood, float64[n]."""
    n = x.shape[0]
    out = np.empty(n, np.float64)
    log_a = math.log(a)
    base = math.lgamma(a + b) - math.lgamma(b) - math.lgamma(r) + r * math.log(alpha)
    for i in range(n):
        xi = x[i]
        rx = r + xi
        head = base + math.lgamma(rx) + math.lgamma(b + xi) - math.lgamma(a + b + xi)
        alive = -rx * math.log(alpha + age[i])
        if xi > 0.0:
            dropped = log_a - math.log(b + xi - 1.0) - rx * math.log(alpha + t_x[i])
            out[i] = head + _log_add_exp(alive, dropped)
        else:
            out[i] = head + alive
    return out


def bgnbd_log_likelihood_py(
    x: np.ndarray, t_x: np.ndarray, age: np.ndarray, r: float, alpha: float, a: float, b: float
) -> np.ndarray:
    """Reference for :func:`bgnbd_log_likelihood`."""
    log_a = math.log(a)
    base = math.lgamma(a + b) - math.lgamma(b) - math.lgamma(r) + r * math.log(alpha)
    out = []
    for xi, txi, ti in zip(x.tolist(), t_x.tolist(), age.tolist(), strict=True):
        rx = r + xi
        head = base + math.lgamma(rx) + math.lgamma(b + xi) - math.lgamma(a + b + xi)
        alive = -rx * math.log(alpha + ti)
        if xi > 0.0:
            dropped = log_a - math.log(b + xi - 1.0) - rx * math.log(alpha + txi)
            hi = max(alive, dropped)
            out.append(head + hi + math.log1p(math.exp(min(alive, dropped) - hi)))
        else:
            out.append(head + alive)
    return np.array(out, dtype=np.float64)


@njit(cache=True, nogil=True)
def bgnbd_log_likelihood_grad(
    x: np.ndarray, t_x: np.ndarray, age: np.ndarray, weight: np.ndarray, r: float, alpha: float, a: float, b: float
) -> tuple[float, np.ndarray]:
    """(Σ weight·ℓ, ∂/∂(ln r, ln α, ln a, ln b)); x must hold whole numbers ≥ 0."""
    n = x.shape[0]
    grad = np.zeros(4, np.float64)
    if n == 0:
        return 0.0, grad
    x_max = 0
    for i in range(n):
        x_max = max(x_max, int(x[i]))
    # Everything that depends on x alone, once per distinct count rather than once per customer.
    head = np.empty(x_max + 1, np.float64)
    d_r_head = np.empty(x_max + 1, np.float64)
    d_a_head = np.empty(x_max + 1, np.float64)
    d_b_head = np.empty(x_max + 1, np.float64)
    log_alpha = math.log(alpha)
    base = math.lgamma(a + b) - math.lgamma(b) - math.lgamma(r) + r * log_alpha
    psi_r = digamma(r)
    psi_b = digamma(b)
    psi_ab = digamma(a + b)
    for k in range(x_max + 1):
        xk = float(k)
        head[k] = base + math.lgamma(r + xk) + math.lgamma(b + xk) - math.lgamma(a + b + xk)
        psi_abx = digamma(a + b + xk)
        d_r_head[k] = digamma(r + xk) - psi_r + log_alpha
        d_a_head[k] = psi_ab - psi_abx
        d_b_head[k] = psi_ab + digamma(b + xk) - psi_b - psi_abx
    log_a = math.log(a)
    total = 0.0
    g_r = 0.0
    g_alpha = 0.0
    g_a = 0.0
    g_b = 0.0
    for i in range(n):
        w = weight[i]
        k = int(x[i])
        xi = x[i]
        rx = r + xi
        at_age = alpha + age[i]
        log_at_age = math.log(at_age)
        alive = -rx * log_at_age
        if xi > 0.0:
            at_tx = alpha + t_x[i]
            log_at_tx = math.log(at_tx)
            bx1 = b + xi - 1.0
            dropped = log_a - math.log(bx1) - rx * log_at_tx
            hi = max(alive, dropped)
            e_alive = math.exp(alive - hi)
            e_dropped = math.exp(dropped - hi)
            s = e_alive + e_dropped
            ll = head[k] + hi + math.log(s)
            w_alive = e_alive / s
            w_dropped = e_dropped / s
            d_r = d_r_head[k] - w_alive * log_at_age - w_dropped * log_at_tx
            d_alpha = r / alpha - rx * (w_alive / at_age + w_dropped / at_tx)
            d_a = d_a_head[k] + w_dropped / a
            d_b = d_b_head[k] - w_dropped / bx1
        else:
            ll = head[k] + alive
            d_r = d_r_head[k] - log_at_age
            d_alpha = r / alpha - rx / at_age
            d_a = d_a_head[k]
            d_b = d_b_head[k]
        total += w * ll
        g_r += w * d_r
        g_alpha += w * d_alpha
        g_a += w * d_a
        g_b += w * d_b
    grad[0] = g_r * r
    grad[1] = g_alpha * alpha
    grad[2] = g_a * a
    grad[3] = g_b * b
    return total, grad


@njit(cache=True, nogil=True)
def gamma_gamma_log_likelihood(x: np.ndarray, m: np.ndarray, p: float, q: float, v: float) -> np.ndarray:
    """Per-customer Gamma-Gamma log-density of the mean spend m over x ≥ 1 transactions, float64[n]."""
    n = x.shape[0]
    out = np.empty(n, np.float64)
    base = q * math.log(v) - math.lgamma(q)
    for i in range(n):
        px = p * x[i]
        mx = m[i] * x[i]
        out[i] = base + math.lgamma(px + q) - math.lgamma(px) + px * math.log(mx) - math.log(m[i]) - (px + q) * math.log(v + mx)
    return out


def gamma_gamma_log_likelihood_py(x: np.ndarray, m: np.ndarray, p: float, q: float, v: float) -> np.ndarray:
    """Reference for :func:`gamma_gamma_log_likelihood`."""
    base = q * math.log(v) - math.lgamma(q)
    out = []
    for xi, mi in zip(x.tolist(), m.tolist(), strict=True):
        px = p * xi
        mx = mi * xi
        out.append(base + math.lgamma(px + q) - math.lgamma(px) + px * math.log(mx) - math.log(mi) - (px + q) * math.log(v + mx))
    return np.array(out, dtype=np.float64)


@njit(cache=True, nogil=True)
def gamma_gamma_log_likelihood_grad(
    x: np.ndarray, m: np.ndarray, weight: np.ndarray, p: float, q: float, v: float
) -> tuple[float, np.ndarray]:
    """(Σ weight·ℓ, ∂/∂(ln p, ln q, ln v))."""
    n = x.shape[0]
    grad = np.zeros(3, np.float64)
    log_v = math.log(v)
    base = q * log_v - math.lgamma(q)
    psi_q = digamma(q)
    total = 0.0
    g_p = 0.0
    g_q = 0.0
    g_v = 0.0
    for i in range(n):
        w = weight[i]
        xi = x[i]
        px = p * xi
        mx = m[i] * xi
        log_mx = math.log(mx)
        log_vmx = math.log(v + mx)
        total += w * (base + math.lgamma(px + q) - math.lgamma(px) + px * log_mx - math.log(m[i]) - (px + q) * log_vmx)
        psi_pxq = digamma(px + q)
        g_p += w * xi * (psi_pxq - digamma(px) + log_mx - log_vmx)
        g_q += w * (psi_pxq - psi_q + log_v - log_vmx)
        g_v += w * (q / v - (px + q) / (v + mx))
    grad[0] = g_p * p
    grad[1] = g_q * q
    grad[2] = g_v * v
    return total, grad
