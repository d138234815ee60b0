"""Return consistency: does the page explain the return beyond the state?

A return-conditioned policy learns p(a | s, R) from logged (s, a, R). It can only pick a better
page for a higher asked return if the page carries information about the return that the state
does not: the held-out R² of the return-to-go from (s, a) above the R² from s alone. ``r2_gain``
measures it with the same small MLP for both inputs, plainly and with inverse-propensity weights
(the logging policy's choices confound the plain figure: it picks pages by the state).

Two MLPs fitted apart differ by their fitting noise (about ±0.004 of R² on 3,000 users), more
than a page's share of a day's return. The *paired* IPW gain takes both predictions from the one
(s, a) model: its prediction for the logged page against its mean over the pages, which is the
state-only prediction under the uniform policy that IPW weights stand for. Its gain is positive on
held-out users only where the page-dependent part of the model generalises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from glan_ray.data.history import features_before_each
from glan_ray.diagnose.frame import SessionFrame
from glan_ray.schema import N_PAGES


@dataclass
class R2Gain:
    """Held-out R² of a target from s and from (s, a)."""

    r2_state: float
    r2_state_page: float
    gain_se: float = 0.0
    """Bootstrap standard error of the gain over the test users (the same rows for both)."""
    paired_gain: float | None = None
    """IPW only: R² of the (s, a) model's prediction minus R² of its mean over the pages."""
    paired_gain_se: float = 0.0
    """Bootstrap standard error of ``paired_gain`` over the test users."""

    @property
    def gain(self) -> float:
        """R²(s, a) - R²(s)."""
        return self.r2_state_page - self.r2_state

    @property
    def share(self) -> float:
        """The share of what the state leaves unexplained that the page explains."""
        return self.gain / max(1.0 - self.r2_state, 1e-9)


@dataclass
class Consistency:
    """Return consistency of the remaining-day return, plain and IPW, with the state a
    state-based learner sees (obs) and the one a sequence model sees (obs + the day's history
    summaries, ``schema.HIST_FEATURES``)."""

    n_sessions: int
    plain: R2Gain | None = None
    ipw: R2Gain | None = None
    hist_plain: R2Gain | None = None
    hist_ipw: R2Gain | None = None


def _fit_r2(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    test: np.ndarray,
    seed: int,
    epochs: int = 40,
    page_mean: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Weighted squared errors (N_test,) on the standardised target of an MLP fitted with
    weights ``w`` (early stop on validation), test rows in order; with ``page_mean`` (the last
    N_PAGES columns of ``x`` are the page's one-hot) also the errors of the model's prediction
    averaged over the pages, else None."""
    torch.manual_seed(seed)
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
    ym, ys = float(np.average(y[train], weights=w[train])), float(y[train].std() + 1e-9)
    tx = torch.from_numpy(((x - mu) / sd).astype(np.float32))
    ty = torch.from_numpy(((y - ym) / ys).astype(np.float32))
    tw = torch.from_numpy((w / w[train].mean()).astype(np.float32))
    model = nn.Sequential(nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 1))  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(train)
    vi, ti = torch.from_numpy(np.flatnonzero(val)), torch.from_numpy(np.flatnonzero(test))

    def wmse(rows: torch.Tensor) -> float:
        with torch.no_grad():
            e = (model(tx[rows])[:, 0] - ty[rows]) ** 2
            return float((e * tw[rows]).sum() / tw[rows].sum())

    best, state, bad = float("inf"), None, 0
    for _ in range(epochs):
        rng.shuffle(idx)
        for i in range(0, len(idx), 1024):
            b = torch.from_numpy(idx[i : i + 1024])
            loss = ((model(tx[b])[:, 0] - ty[b]) ** 2 * tw[b]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        v = wmse(vi)
        if v < best - 1e-5:
            best, bad, state = v, 0, {k: t.clone() for k, t in model.state_dict().items()}
        else:
            bad += 1
            if bad >= 4:
                break
    if state is not None:
        model.load_state_dict(state)
    with torch.no_grad():
        err = ((model(tx[ti])[:, 0] - ty[ti]) ** 2).numpy().astype(np.float64)
        if not page_mean:
            return err, None
        raw = torch.from_numpy(x[ti.numpy()].astype(np.float32))  # (N_test, D)
        preds = []
        for a in range(N_PAGES):
            xa = raw.clone()
            xa[:, -N_PAGES:] = 0.0
            xa[:, -N_PAGES + a] = 1.0
            xa = (xa - torch.from_numpy(mu.astype(np.float32))) / torch.from_numpy(
                sd.astype(np.float32)
            )
            preds.append(model(xa)[:, 0])
        mean = torch.stack(preds, 1).mean(1)  # (N_test,)
        return err, ((mean - ty[ti]) ** 2).numpy().astype(np.float64)


def _r2(err: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Weighted R² from per-row squared errors ``err`` of the standardised target ``y``."""
    var = float(np.average((y - np.average(y, weights=w)) ** 2, weights=w))
    return 1.0 - float(np.average(err, weights=w)) / max(var, 1e-12)


BOOTSTRAP = 200
"""Bootstrap resamples of the test users for the gain's standard error."""


def split_users(f: SessionFrame, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row masks of held-out users: 60% train, 20% validation, 20% test."""
    users = f.users()
    u = np.random.default_rng(seed).random(len(users))
    part = np.where(u < 0.6, 0, np.where(u < 0.8, 1, 2))[np.searchsorted(users, f.user_id)]
    return part == 0, part == 1, part == 2


def r2_gain(
    f: SessionFrame, y: np.ndarray, ipw: bool, seed: int = 0, state: np.ndarray | None = None
) -> R2Gain:
    """Held-out R² of ``y`` (M,) from the state (obs unless ``state`` (M, D) is given) and from
    state + page, optionally IPW-weighted."""
    train, val, test = split_users(f, seed)
    w = 1.0 / np.clip(f.propensity, 1e-3, 1.0) if ipw else np.ones(len(f))
    s = (f.obs if state is None else state).astype(np.float64)
    sa = np.concatenate([s, np.eye(N_PAGES)[f.action]], axis=1)
    e_s, _ = _fit_r2(s, y, w, train, val, test, seed)
    e_sa, e_mean = _fit_r2(sa, y, w, train, val, test, seed, page_mean=ipw)
    # the standardised test target, as _fit_r2 scores it
    yt = (y[test] - np.average(y[train], weights=w[train])) / (y[train].std() + 1e-9)
    wt = w[test] / w[train].mean()
    users = f.user_id[test]
    uniq, inv = np.unique(users, return_inverse=True)
    rng = np.random.default_rng(seed)
    boot, boot_paired = [], []
    for _ in range(BOOTSTRAP):
        pick = np.bincount(rng.integers(0, len(uniq), len(uniq)), minlength=len(uniq))[inv]
        ww = wt * pick
        if ww.sum() <= 0:
            continue
        boot.append(_r2(e_sa, yt, ww) - _r2(e_s, yt, ww))
        if e_mean is not None:
            boot_paired.append(_r2(e_sa, yt, ww) - _r2(e_mean, yt, ww))

    def se(x: list[float]) -> float:
        return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0

    return R2Gain(
        r2_state=_r2(e_s, yt, wt),
        r2_state_page=_r2(e_sa, yt, wt),
        gain_se=se(boot),
        paired_gain=None if e_mean is None else _r2(e_sa, yt, wt) - _r2(e_mean, yt, wt),
        paired_gain_se=se(boot_paired),
    )


PARTS = ("plain", "ipw", "hist_plain", "hist_ipw")
"""The measures: s = obs or obs + history summaries (``hist_``), plain or IPW."""


def measure(f: SessionFrame, seed: int = 0, parts: tuple[str, ...] = PARTS) -> Consistency:
    """Return consistency of the remaining-day return (the DT's return-to-go): the ``parts``
    asked for (the others None)."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown consistency part(s) {unknown}; the parts are {PARTS}")
    y = f.remaining_return
    hist = None
    if any(p.startswith("hist_") for p in parts):
        hist = np.concatenate([f.obs, history_of(f)], axis=1)
    out = Consistency(n_sessions=len(f))
    for p in parts:
        state = hist if p.startswith("hist_") else None
        setattr(out, p, r2_gain(f, y, ipw=p.endswith("ipw"), seed=seed, state=state))
    return out


def history_of(f: SessionFrame) -> np.ndarray:
    """(M, HIST_DIM) history features of each session (the day's sessions before it)."""
    return features_before_each(f.session_idx, f.group, f.action, f.dur, f.y_sw, f.exit_page,
                                f.obs)  # fmt: skip


__all__ = ["PARTS", "Consistency", "R2Gain", "measure", "r2_gain", "split_users"]
