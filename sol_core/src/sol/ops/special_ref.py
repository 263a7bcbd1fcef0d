"""NumPy references of the special functions (:mod:`sol.ops.special`), in plain Python on doubles
(vectorized element by element) except the orthogonal polynomials, which run PyTorch's
recurrences on whole arrays in the input's own dtype. The formulas and ranges are those of core's C
helpers (``sol/lowering/templates/special.j2``), which the comments there explain; special values
are PyTorch's."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

INF, NAN = math.inf, math.nan
EULER = 0.57721566490153286061


def digamma(x: float) -> float:
    if x == 0:
        return math.copysign(INF, -math.copysign(1.0, x))
    if math.isnan(x) or x == INF:
        return x
    if x == -INF:
        return NAN
    acc = 0.0
    if x < 0:
        fl = math.floor(x)
        if fl == x:
            return NAN
        r = x - fl
        if r > 0.5:
            r = x - (fl + 1)
        acc = -math.pi / math.tan(math.pi * r)
        x = 1 - x
    while x < 10:
        acc -= 1 / x
        x += 1
    z = 1 / (x * x)
    tail = z * (1 / 12 - z * (1 / 120 - z * (1 / 252 - z * (1 / 240 - z * (1 / 132 - z * (691 / 32760 - z / 12))))))
    return acc + math.log(x) - 0.5 / x - tail


_B2J = (1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730, 7 / 6, -3617 / 510, 43867 / 798, -174611 / 330,
        854513 / 138, -236364091 / 2730)


def _pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except OverflowError:
        return INF
    except ValueError:
        return NAN


def zeta(s: float, q: float) -> float:
    if s == 1:
        return INF
    if s < 1:
        return NAN
    if q <= 0:
        if math.isinf(q) or q == math.floor(q):
            return INF
        if math.isnan(s) or (not math.isinf(s) and s != math.floor(s)):
            return NAN
    if math.isnan(s) or math.isnan(q) or q == INF:
        return NAN
    total, a, k = 0.0, q, 0
    while k < 10 or a < 10:
        t = _pow(a, -s)
        total += t
        a += 1
        if k >= 10 and 0 < t <= 1e-17 * abs(total):
            return total
        k += 1
    tail = _pow(a, 1 - s) / (s - 1) + 0.5 * _pow(a, -s)
    rise, term_a, fact = s, _pow(a, -s - 1), 2.0
    for j in range(12):
        t = _B2J[j] / fact * rise * term_a
        tail += t
        if abs(t) <= 1e-17 * abs(total + tail):
            break
        rise *= (s + 2 * j + 1) * (s + 2 * j + 2)
        term_a /= a * a
        fact *= (2 * j + 3) * (2 * j + 4)
    return total + tail


def polygamma(n: int, x: float) -> float:
    if n == 1 and math.isinf(x):
        return 0.0 if x > 0 else NAN
    fact = math.factorial(n)
    z = zeta(n + 1, x)
    return (fact if n % 2 == 1 else -fact) * z


def lgamma(x: float) -> float:
    if math.isnan(x):
        return x
    if math.isinf(x) or (x <= 0 and x == math.floor(x)):
        return INF
    return math.lgamma(x)


def _igamma_front(a: float, x: float) -> float:
    try:
        return math.exp(a * math.log(x) - x - math.lgamma(a))
    except OverflowError:
        return INF


def igamma(upper: bool, a: float, x: float) -> float:
    """P(a, x) (Q(a, x) = 1 - P when ``upper``): as sol_sf_igamma in special.j2."""
    if x < 0 or a < 0:
        return NAN
    if a == 0:
        return float(not upper) if x > 0 else NAN
    if x == 0:
        return float(upper)
    if a == INF:
        return NAN if x == INF else float(upper)
    if x == INF:
        return float(not upper)
    if math.isnan(a) or math.isnan(x):
        return NAN
    if a > 1e4 and abs(x - a) < 0.3 * a:
        mu = x / a - 1
        eta = math.copysign(math.sqrt(2 * (mu - math.log1p(mu))), mu)
        c0 = -1 / 3 + mu / 12 if abs(mu) < 1e-4 else 1 / mu - 1 / eta
        q = 0.5 * math.erfc(eta * math.sqrt(0.5 * a)) + math.exp(-0.5 * a * eta * eta) / math.sqrt(2 * math.pi * a) * c0
        return q if upper else 1 - q
    front = _igamma_front(a, x)
    if x < a + 1:
        term = total = 1 / a
        for n in range(1, 20000):
            term *= x / (a + n)
            total += term
            if term < 1e-17 * total:
                break
        p = total * front
        return 1 - p if upper else p
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 20000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        step = d * c
        h *= step
        if abs(step - 1) < 1e-16:
            break
    q = front * h
    return q if upper else 1 - q


def erfinv(y: float) -> float:
    if math.isnan(y) or y < -1 or y > 1:
        return NAN
    if abs(y) == 1:
        return math.copysign(INF, y)
    if y == 0:
        return y
    ay = abs(y)
    lg = math.log((1 - ay) * (1 + ay))
    c = 2 / (math.pi * 0.147) + 0.5 * lg
    x = math.sqrt(math.sqrt(c * c - lg / 0.147) - c)
    for _ in range(4):
        r = (1 - ay) - math.erfc(x) if ay > 0.5 else math.erf(x) - ay
        x -= r / (1.1283791670955126 * math.exp(-x * x))
    return -x if y < 0 else x


def ndtri(p: float) -> float:
    if math.isnan(p) or p < 0 or p > 1:
        return NAN
    if p in (0.0, 1.0):
        return -INF if p == 0 else INF
    q = 1 - p if p > 0.5 else p
    t = math.sqrt(-2 * math.log(q))
    x = -(t - (2.515517 + t * (0.802853 + t * 0.010328)) / (1 + t * (1.432788 + t * (0.189269 + t * 0.001308))))
    for _ in range(4):
        r = 0.5 * math.erfc(-x * 0.70710678118654752) - q
        x -= r / (0.3989422804014327 * math.exp(-0.5 * x * x))
    return -x if p > 0.5 else x


def erfcx(x: float) -> float:
    if math.isnan(x):
        return x
    if x < 26:
        try:
            return math.exp(x * x) * math.erfc(x)
        except OverflowError:
            return INF
    if x == INF:
        return 0.0
    z, term, total = 1 / (2 * x * x), 1.0, 1.0
    for k in range(1, 9):
        term *= -(2 * k - 1) * z
        total += term
    return total / (x * 1.7724538509055160)


def log_ndtr(x: float) -> float:
    t = x * 0.70710678118654752
    if x < -1:
        e = erfcx(-t)
        return (math.log(0.5 * e) if e > 0 else -INF) - t * t
    return math.log1p(-0.5 * math.erfc(t))


def _hankel(nu: int, x: float) -> tuple[float, float]:
    mu, term, last, p, q = 4.0 * nu * nu, 1.0, 1.0, 1.0, 0.0
    for k in range(1, 40):
        term *= (mu - (2.0 * k - 1) ** 2) / (8.0 * k * x)
        if abs(term) > last:
            break
        last = abs(term)
        if k % 4 == 1:
            q += term
        elif k % 4 == 2:
            p -= term
        elif k % 4 == 3:
            q -= term
        else:
            p += term
        if last < 1e-17:
            break
    return p, q


def _besselj(nu: int, x: float) -> float:
    if x < 17:
        q = 0.25 * x * x
        t = 0.5 * x if nu else 1.0
        s = t
        for k in range(1, 120):
            t *= -q / (k * (k + nu))
            s += t
            if k > q and abs(t) < 1e-17:
                break
        return s
    p, q = _hankel(nu, x)
    sn, cs = math.sin(x), math.cos(x)
    c, s = (sn - cs, -(sn + cs)) if nu else (cs + sn, sn - cs)
    return math.sqrt(1 / (math.pi * x)) * (p * c - q * s)


def _bessely(nu: int, x: float) -> float:
    if x < 17:
        q = 0.25 * x * x
        lead = 2 / math.pi * (math.log(0.5 * x) + EULER) * _besselj(nu, x)
        h, t = 0.0, (0.5 * x if nu else 1.0)
        s = t if nu else 0.0
        for k in range(1, 120):
            t *= -q / (k * (k + nu))
            h += 1.0 / k
            w = h + h + 1.0 / (k + 1) if nu else h
            s += w * t
            if k > q and abs(w * t) < 1e-17:
                break
        return lead - 2 / (math.pi * x) - s / math.pi if nu else lead - 2 / math.pi * s
    p, q = _hankel(nu, x)
    sn, cs = math.sin(x), math.cos(x)
    c, s = (sn - cs, -(sn + cs)) if nu else (cs + sn, sn - cs)
    return math.sqrt(1 / (math.pi * x)) * (p * s + q * c)


def bessel_j0(x: float) -> float:
    if math.isnan(x) or math.isinf(x):
        return NAN
    return _besselj(0, abs(x))


def bessel_j1(x: float) -> float:
    if math.isnan(x) or math.isinf(x):
        return NAN
    if x == 0:
        return x
    return -_besselj(1, -x) if x < 0 else _besselj(1, x)


def _bessel_y(nu: int) -> Callable[[float], float]:
    def fn(x: float) -> float:
        if math.isnan(x) or x < 0 or x == INF:
            return NAN
        return -INF if x == 0 else _bessely(nu, x)

    return fn


bessel_y0, bessel_y1 = _bessel_y(0), _bessel_y(1)


def _besseli_scaled(nu: int, x: float) -> float:
    if x <= 30:
        q = 0.25 * x * x
        t = 0.5 * x if nu else 1.0
        s = t
        for k in range(1, 200):
            t *= q / (k * (k + nu))
            s += t
            if t < 1e-17 * s:
                break
        return s * math.exp(-x)
    mu, term, s = 4.0 * nu * nu, 1.0, 1.0
    for k in range(1, 30):
        term *= -(mu - (2.0 * k - 1) ** 2) / (8.0 * k * x)
        s += term
        if abs(term) < 1e-17:
            break
    return s / math.sqrt(2 * math.pi * x)


def _besseli(nu: int, scaled: bool) -> Callable[[float], float]:
    def fn(x: float) -> float:
        if math.isnan(x):
            return x
        a = abs(x)
        if a == INF:
            y = 0.0 if scaled else NAN
        elif scaled:
            y = _besseli_scaled(nu, a)
        else:
            y = _besseli_scaled(nu, a) * math.exp(a) if a <= 700 else INF
        return -y if nu and x < 0 else y

    return fn


i0, i0e, i1, i1e = _besseli(0, False), _besseli(0, True), _besseli(1, False), _besseli(1, True)


def _besselk_integral(nu: float, x: float) -> float:
    h = min(0.5 / math.sqrt(x), 0.25)
    s = 0.5
    for k in range(1, 400):
        t = k * h
        sh = math.sinh(0.5 * t)
        if 2 * x * sh * sh - nu * t > 45:
            break
        s += math.exp(-2 * x * sh * sh) * math.cosh(nu * t)
    return s * h


def _besselk_scaled(nu: int, x: float) -> float:
    if x > 2:
        return _besselk_integral(nu, x)
    q, lg = 0.25 * x * x, math.log(0.5 * x) + EULER
    t, h = (0.5 * x if nu else 1.0), 0.0
    s = 0.5 * x if nu else 0.0
    for k in range(1, 60):
        t *= q / (k * (k + nu))
        h += 1.0 / k
        s += (h + h + 1.0 / (k + 1) if nu else h) * t
        if t < 1e-18:
            break
    i = _besseli_scaled(nu, x) * math.exp(x)
    k_ = 1 / x + lg * i - 0.5 * s if nu else -lg * i + s
    return k_ * math.exp(x)


def _besselk(nu: int, scaled: bool) -> Callable[[float], float]:
    def fn(x: float) -> float:
        if math.isnan(x) or x < 0:
            return NAN
        if x == 0:
            return INF
        if x == INF:
            return 0.0
        k = _besselk_scaled(nu, x)
        return k if scaled else k * math.exp(-x)

    return fn


k0, k0e, k1, k1e = _besselk(0, False), _besselk(0, True), _besselk(1, False), _besselk(1, True)


def spherical_bessel_j0(x: float) -> float:
    if math.isinf(x):
        return 0.0
    return 1.0 if x == 0 else math.sin(x) / x


def airy_ai(x: float) -> float:
    if math.isnan(x) or math.isinf(x):
        return NAN
    if x > 2:
        zeta_ = 2 / 3 * x * math.sqrt(x)
        if zeta_ > 800:
            return 0.0
        return math.sqrt(x / 3) / math.pi * _besselk_integral(1 / 3, zeta_) * math.exp(-zeta_)
    if x >= -9:
        x3 = x * x * x
        f, g, tf, tg = 1.0, x, 1.0, x
        for k in range(1, 100):
            tf *= x3 / ((3.0 * k - 1) * (3.0 * k))
            tg *= x3 / ((3.0 * k) * (3.0 * k + 1))
            f += tf
            g += tg
            if abs(tf) < 1e-18 and abs(tg) < 1e-18:
                break
        return 0.35502805388781723926 * f - 0.25881940379280679840 * g
    z = -x
    zeta_ = 2 / 3 * z * math.sqrt(z)
    u, p, q, last = 1.0, 1.0, 0.0, 1.0
    for k in range(1, 40):
        u *= (6.0 * k - 5) * (6.0 * k - 3) * (6.0 * k - 1) / ((2.0 * k - 1) * 216.0 * k) / zeta_
        if abs(u) > last:
            break
        last = abs(u)
        if k % 4 == 1:
            q += u
        elif k % 4 == 2:
            p -= u
        elif k % 4 == 3:
            q -= u
        else:
            p += u
        if last < 1e-17:
            break
    sn, cs = math.sin(zeta_), math.cos(zeta_)
    return (p * (cs + sn) + q * (sn - cs)) / (math.sqrt(2 * math.pi) * math.sqrt(math.sqrt(z)))


def vectorized(fn: Callable[..., float]) -> Callable[..., np.ndarray]:
    return np.vectorize(fn, otypes=[np.float64])


# --- orthogonal polynomials, whole arrays in the input's dtype (PyTorch's recurrences) ------------


def _order(n: np.ndarray) -> np.ndarray:
    """n truncated to int64; NaN and |n| >= 2^63 become -1 (negative, as x86's conversion makes them)."""
    bad = np.isnan(n) | (np.abs(n) >= 9.2233720368547758e18)
    return np.where(bad, -1, np.trunc(np.where(bad, 0, n))).astype(np.int64)


def _recurrence(first: np.ndarray, second: np.ndarray, n: np.ndarray,
                step: Callable[[int, np.ndarray, np.ndarray], np.ndarray], start: int) -> np.ndarray:
    """P_n for every element: P_0 = first, P_1 = second, P_k+1 = step(k, P_k, P_k-1) for k >= start
    (the loop index of PyTorch's kernel) up to each element's own n."""
    p, q = first, second
    out = np.where(n == 0, first, second)
    top = int(n.max()) if n.size else 0
    for i in range(2, top + 1):
        r = step(i - 2 + start, q, p)
        p, q = q, r
        out = np.where(n == i, r, out)
    return out


def polynomial(kind: str, x: np.ndarray, nf: np.ndarray) -> np.ndarray:
    x, nf = np.broadcast_arrays(x, nf)
    dt = x.dtype.type
    n = _order(nf)
    one = np.ones_like(x)
    with np.errstate(all="ignore"):
        y = _polynomial(kind, x, n, dt, one)
    return np.where(n < 0, dt(0), y).astype(x.dtype)


def _sign_odd(n: np.ndarray, value: np.ndarray, dt: type) -> np.ndarray:
    return np.where(n % 2 == 0, value, -value).astype(dt)


def _polynomial(kind: str, x: np.ndarray, n: np.ndarray, dt: type, one: np.ndarray) -> np.ndarray:
    two_x = x + x
    nn = np.maximum(n, 0)
    if kind.startswith("shifted_"):
        return _shifted(kind.removeprefix("shifted_chebyshev_"), x, n, dt, one)
    if kind in ("chebyshev_t", "chebyshev_u", "chebyshev_v", "chebyshev_w"):
        first = {"chebyshev_t": x, "chebyshev_u": two_x, "chebyshev_v": two_x - dt(1),
                 "chebyshev_w": two_x + dt(1)}[kind]
        y = _recurrence(one, first, nn, lambda k, q, p: two_x * q - p, 2)
        return _chebyshev_ends(kind, x, x, n, nn, y, dt, 6 if kind == "chebyshev_t" else 8)
    if kind == "hermite_h":
        return _recurrence(one, two_x, nn, lambda k, q, p: two_x * q - dt(2 * k - 2) * p, 2)
    if kind == "hermite_he":
        return _recurrence(one, x, nn, lambda k, q, p: x * q - dt(k) * p, 1)
    if kind == "laguerre_l":
        y = _recurrence(one, dt(1) - x, nn,
                        lambda k, q, p: ((dt(k) + dt(k) + dt(1) - x) * q - dt(k) * p) / (dt(k) + dt(1)), 1)
        return np.where(np.abs(x) == 0, dt(1), y)
    # legendre_p
    y = _recurrence(one, x, nn, lambda k, q, p: ((dt(k) + dt(k) + dt(1)) * x * q - dt(k) * p) / (dt(k) + dt(1)), 1)
    return np.where(np.abs(x) == 1, np.where((x > 0) | (n % 2 == 0), dt(1), dt(-1)), y)


def _closed(kind: str, y: np.ndarray, nf: np.ndarray, dt: type) -> np.ndarray:
    """The closed forms in t = acos(y) (the element type's arithmetic) where PyTorch uses them."""
    t = np.arccos(np.clip(y, dt(-1), dt(1))).astype(dt)
    half = dt(0.5)
    if kind == "chebyshev_t":
        return np.cos(nf * t)
    if kind == "chebyshev_u":
        s = np.sin(t)
        return np.where(s != 0, np.sin((nf + dt(1)) * t) / s, (nf + dt(1)) * np.cos((nf + dt(1)) * t) / y)
    if kind == "chebyshev_v":
        return np.where(np.sin(t / dt(2)) != 1, np.cos((nf + half) * t) / np.cos(t / dt(2)),
                        _sign_odd(nf.astype(np.int64), nf + nf + dt(1), dt))
    return np.where(np.cos(t / dt(2)) != 1, np.sin((nf + half) * t) / np.sin(t / dt(2)), np.nan)


def _chebyshev_ends(kind: str, x: np.ndarray, y: np.ndarray, n: np.ndarray, nn: np.ndarray, rec: np.ndarray,
                    dt: type, above: int) -> np.ndarray:
    nf: np.ndarray = nn.astype(dt)
    closed = _closed(kind, y, nf, dt)
    if kind == "chebyshev_w":  # cos(t/2) == 1: x = 1 rounds there
        at_one = np.where(x > 0, nf + nf + dt(1), _sign_odd(nn, np.ones_like(x), dt))
        closed = np.where(np.isnan(closed) & ~np.isnan(y), at_one, closed)
    out = np.where((n > above) & (np.abs(y) < 1), closed, rec)
    ends = {"chebyshev_t": np.where((x > 0) | (n % 2 == 0), dt(1), dt(-1)),
            "chebyshev_u": np.where((x > 0) | (n % 2 == 0), nf + dt(1), -(nf + dt(1))),
            "chebyshev_v": np.where(x > 0, dt(1), _sign_odd(nn, nf + nf + dt(1), dt)),
            "chebyshev_w": np.where(x > 0, nf + nf + dt(1), _sign_odd(nn, np.ones_like(x), dt))}[kind]
    return np.where(np.abs(x) == 1, ends, out)


def _shifted(kind: str, x: np.ndarray, n: np.ndarray, dt: type, one: np.ndarray) -> np.ndarray:
    y = x + x - dt(1)
    two_y = y + y
    nn = np.maximum(n, 0)
    nf = nn.astype(dt)
    first = {"t": y, "u": two_y, "v": two_y - dt(1), "w": two_y + dt(1)}[kind]
    rec = _recurrence(one, first, nn, lambda k, q, p: two_y * q - p, 2)
    closed = _closed("chebyshev_" + kind, y, nf, dt)
    if kind == "w":
        closed = np.where(np.isnan(closed) & ~np.isnan(y), _sign_odd(nn, one, dt), closed)
    above = 4 if kind == "w" else 6
    out = np.where((n > above) & (np.abs(y) < 1), closed, rec)
    at_one = {"t": one, "u": nf + dt(1), "v": one, "w": nf + nf + dt(1)}[kind]
    at_zero = {"t": _sign_odd(nn, one, dt), "u": _sign_odd(nn, nf + dt(1), dt), "v": _sign_odd(nn, nf + nf + dt(1), dt),
               "w": _sign_odd(nn, one, dt)}[kind]
    return np.where(x == 1, at_one, np.where(x == 0, at_zero, out))
