"""History information: how much better the next session is predicted with the day's past.

For every session i the predictors see, at decision time, the observation and the page, and
predict the session's outcomes: its log landing duration, its drop-off, whether another session
follows today, and its exit page. Four inputs are compared on held-out users:

- ``obs``: (observation, page) — what a state-based learner (CQL, KLAN) sees;
- ``hist_features``: + ``schema.HIST_FEATURES`` (``data.history``), hand-made summaries;
- ``sequence``: + the summaries and a GRU over the day's earlier sessions — what a sequence
  model can learn;
- ``latent``: + the true hidden state (simulator only) — what no policy can see.

Losses are in nats per session (Gaussian with the plug-in variance for the duration, log-loss
for the rest), so they add up across outcomes. At a day's first session the history is empty,
so the history predictors are scored with the obs predictor's loss there (what they reduce to).
The history's *gain* is the relative loss reduction of the history predictor over ``obs``; the
*gap closed* is the share of the obs -> latent loss gap that it closes. The history predictor is
``sequence`` or ``hist_features``, whichever has the lower validation loss: the encoder only adds
to the summaries, so a sequence predictor worse than them is an optimisation miss, not the
history's information.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from glan_ray.data.history import features_before_each
from glan_ray.diagnose.frame import SessionFrame
from glan_ray.schema import N_PAGES

logger = logging.getLogger(__name__)

OUTCOMES = ("landing_log_dur", "dropoff", "another_today", "exit_page")
"""The next session's outcomes predicted."""
VARIANTS = ("obs", "hist_features", "sequence", "latent")
"""The inputs compared, from least to most informed."""
INDEX_BUCKETS = ((0, 0), (1, 1), (2, 2), (3, 4), (5, 9), (10, 10_000))
"""Session-index buckets of the per-index report."""


@dataclass(frozen=True)
class FitConfig:
    """Training of the small predictors (the same for every variant)."""

    hidden: int = 64
    """Width of the MLP trunk (two layers)."""
    gru_hidden: int = 32
    """Width of the sequence encoder's state."""
    epochs: int = 40
    """Most passes over the training days (stops earlier on the validation loss)."""
    patience: int = 4
    """Epochs without a validation improvement before stopping."""
    batch_days: int = 256
    """User-days per batch."""
    lr: float = 2e-3
    """Adam's learning rate."""
    seed: int = 0
    """Seed of the split and the initial weights."""


@dataclass
class GainResult:
    """Held-out losses (nats per session) by variant and outcome, and what they imply."""

    loss: dict[str, dict[str, float]]  # variant -> outcome -> loss
    total: dict[str, float]  # variant -> sum over outcomes
    by_index: dict[str, dict[str, float]]  # variant -> index bucket -> total loss
    outcomes: list[str]
    n_test_sessions: int
    history_gain: float  # (obs - history) / obs, total loss
    features_gain: float  # (obs - hist_features) / obs
    gap_closed: float | None  # (obs - history) / (obs - latent); None without latent
    features_gap_closed: float | None
    gain_by_index: dict[str, float] = field(default_factory=dict)
    history_variant: str = "sequence"
    """The history predictor: ``sequence`` or ``hist_features``, the lower validation loss."""
    val_loss: dict[str, float] = field(default_factory=dict)
    """Validation loss (nats per session) by variant, which picked ``history_variant``."""


def _bucket(t: int) -> str:
    for lo, hi in INDEX_BUCKETS:
        if lo <= t <= hi:
            return str(lo) if lo == hi else (f"{lo}-{hi}" if hi < 10_000 else f"{lo}+")
    return "?"


def _tokens(f: SessionFrame) -> np.ndarray:
    """(M, F_tok) per-session tokens of the sequence encoder: obs, page, durations, drop-off,
    exit page (all zeros where the exit is unknown)."""
    m = len(f)
    a = np.eye(N_PAGES)[f.action]
    ex = np.zeros((m, N_PAGES))
    known = f.exit_page >= 0
    ex[known, f.exit_page[known]] = 1.0
    d = np.log1p(f.dur) / 7.0
    return np.concatenate([f.obs, a, d, f.y_sw[:, None], ex], axis=1).astype(np.float32)


def _pad(f: SessionFrame, x: np.ndarray) -> np.ndarray:
    """(G, S, ...) padded per user-day from (M, ...) rows."""
    s = int(f.session_idx.max()) + 1
    out = np.zeros((f.n_days, s, *x.shape[1:]), dtype=x.dtype)
    out[f.group, f.session_idx] = x
    return out


class OutcomeNet(nn.Module):
    """MLP over [inputs, (sequence state)] with one head per outcome."""

    def __init__(self, n_in: int, n_tok: int, cfg: FitConfig, sequence: bool):
        super().__init__()
        self.sequence = sequence
        extra = cfg.gru_hidden if sequence else 0
        self.gru = nn.GRU(n_tok, cfg.gru_hidden, batch_first=True) if sequence else None
        self.trunk = nn.Sequential(
            nn.Linear(n_in + extra, cfg.hidden),
            nn.ReLU(),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.ReLU(),
        )
        self.head = nn.Linear(cfg.hidden, 3 + N_PAGES)  # dur, drop, another, exit (3)

    def forward(self, x: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
        """x (G, S, n_in), tok (G, S, n_tok) -> (G, S, 6) predictions for each session."""
        if self.gru is not None:
            h, _ = self.gru(tok)  # (G, S, H): state after each session
            before = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)  # before it
            x = torch.cat([x, before], dim=-1)
        return self.head(self.trunk(x))


def _losses(pred: torch.Tensor, y: dict[str, torch.Tensor], var: torch.Tensor) -> torch.Tensor:
    """(N, 4) per-session losses in nats: Gaussian (variance ``var``), 2 log-losses, cross-entropy
    (0 where the exit page is unknown)."""
    bce = nn.functional.binary_cross_entropy_with_logits
    dur = 0.5 * torch.log(2 * math.pi * var) + (pred[:, 0] - y["dur"]) ** 2 / (2 * var)
    drop = bce(pred[:, 1], y["drop"], reduction="none")
    another = bce(pred[:, 2], y["another"], reduction="none")
    known = y["exit"] >= 0
    ce = nn.functional.cross_entropy(pred[:, 3:], y["exit"].clamp(min=0), reduction="none")
    return torch.stack([dur, drop, another, ce * known], dim=1)


def _split(f: SessionFrame, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Held-out users: 60% train, 20% validation, 20% test (boolean masks over days)."""
    users = f.users()
    rng = np.random.default_rng(seed)
    u = rng.random(len(users))
    part = np.where(u < 0.6, 0, np.where(u < 0.8, 1, 2))
    day_user = np.zeros(f.n_days, dtype=np.int64)
    day_user[f.group] = f.user_id
    p = part[np.searchsorted(users, day_user)]
    return p == 0, p == 1, p == 2


def measure(f: SessionFrame, cfg: FitConfig | None = None) -> GainResult:
    """Fit every variant on the same split and report held-out losses."""
    cfg = cfg or FitConfig()
    torch.manual_seed(cfg.seed)
    base = np.concatenate([f.obs, np.eye(N_PAGES)[f.action]], axis=1).astype(np.float32)
    hand = features_before_each(f.session_idx, f.group, f.action, f.dur, f.y_sw, f.exit_page, f.obs)
    inputs = {"obs": base, "hist_features": np.concatenate([base, hand], axis=1)}
    inputs["sequence"] = inputs["hist_features"]  # the encoder adds to the summaries
    if f.latent is not None:
        inputs["latent"] = np.concatenate([base, f.latent.astype(np.float32)], axis=1)
    exit_known = bool((f.exit_page >= 0).any())
    outcomes = [o for o in OUTCOMES if o != "exit_page" or exit_known]
    tok = _pad(f, _tokens(f))
    mask = _pad(f, np.ones(len(f), dtype=bool))
    train, val, test = _split(f, cfg.seed)
    log_dur = np.log1p(f.landing_dur)
    log_dur = log_dur - log_dur[train[f.group]].mean()  # centred: the heads start near it
    targets = {
        "dur": _pad(f, log_dur.astype(np.float32)),
        "drop": _pad(f, f.y_sw.astype(np.float32)),
        "another": _pad(f, f.another_today.astype(np.float32)),
        "exit": _pad(f, f.exit_page.astype(np.int64)),
    }
    idx = _pad(f, f.session_idx)
    loss: dict[str, dict[str, float]] = {}
    by_index: dict[str, dict[str, float]] = {}
    t_idx = idx[test][mask[test]]
    obs_per: np.ndarray | None = None
    val_loss: dict[str, float] = {}
    for name, x in inputs.items():
        xs = _pad(f, _standardise(x, train[f.group]))
        per, val_loss[name] = _fit_one(name, xs, tok, mask, targets, (train, val, test), cfg)
        if name == "obs":
            obs_per = per
        elif name in ("hist_features", "sequence") and obs_per is not None:
            # A day's first session has no history: the history predictors' inputs are the
            # obs predictor's plus zeros, so what they can do there is the obs predictor.
            per = np.where((t_idx == 0)[:, None], obs_per, per)
        cols = [OUTCOMES.index(o) for o in outcomes]
        loss[name] = {o: float(per[:, OUTCOMES.index(o)].mean()) for o in outcomes}
        tot = per[:, cols].sum(1)
        by_index[name] = {}
        for lo, hi in INDEX_BUCKETS:
            sel = (t_idx >= lo) & (t_idx <= hi)
            if sel.any():
                by_index[name][_bucket(lo)] = float(tot[sel].mean())
        logger.info("diagnose: %s held-out loss %.4f nats/session", name, tot.mean())
    total = {k: sum(v.values()) for k, v in loss.items()}
    pick = "sequence" if val_loss["sequence"] <= val_loss["hist_features"] else "hist_features"
    o, s, h = total["obs"], total[pick], total["hist_features"]
    lat = total.get("latent")
    gap = (o - lat) if lat is not None else None
    return GainResult(
        loss=loss,
        total=total,
        by_index=by_index,
        outcomes=outcomes,
        n_test_sessions=int(mask[test].sum()),
        history_gain=(o - s) / abs(o),
        features_gain=(o - h) / abs(o),
        gap_closed=(o - s) / gap if gap else None,
        features_gap_closed=(o - h) / gap if gap else None,
        gain_by_index={
            b: (by_index["obs"][b] - by_index[pick][b]) / abs(by_index["obs"][b])
            for b in by_index["obs"]
        },
        history_variant=pick,
        val_loss=val_loss,
    )


def _standardise(x: np.ndarray, train_rows: np.ndarray) -> np.ndarray:
    mu = x[train_rows].mean(0)
    sd = x[train_rows].std(0) + 1e-6
    return ((x - mu) / sd).astype(np.float32)


def _batches(days: np.ndarray, length: np.ndarray, size: int) -> list[np.ndarray]:
    """``days`` in batches of ``size`` days of similar length (little padding)."""
    order = days[np.argsort(length[days], kind="stable")]
    return [order[i : i + size] for i in range(0, len(order), size)]


def _fit_one(
    name: str,
    x: np.ndarray,
    tok: np.ndarray,
    mask: np.ndarray,
    targets: dict[str, np.ndarray],
    split: tuple[np.ndarray, np.ndarray, np.ndarray],
    cfg: FitConfig,
) -> tuple[np.ndarray, float]:
    """Train one variant; the held-out per-session losses (N_test, 4), test days in order, and
    the best validation loss (nats per session)."""
    torch.manual_seed(cfg.seed)
    train, val, test = split
    model = OutcomeNet(x.shape[-1], tok.shape[-1], cfg, sequence=name == "sequence")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    length = mask.sum(1)
    tx, ttok, tm = torch.from_numpy(x), torch.from_numpy(tok), torch.from_numpy(mask)
    ty = {k: torch.from_numpy(v) for k, v in targets.items()}
    rng = np.random.default_rng(cfg.seed)
    train_b = _batches(np.flatnonzero(train), length, cfg.batch_days)
    val_b = _batches(np.flatnonzero(val), length, 4 * cfg.batch_days)
    # the duration head's variance: the training residual variance, updated each epoch
    var = torch.tensor(float(ty["dur"][tm].var()))

    def run(d_np: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        d = torch.from_numpy(d_np)
        s = int(length[d_np].max())
        m = tm[d, :s]
        pred = model(tx[d, :s], ttok[d, :s])[m]
        return pred, {k: v[d, :s][m] for k, v in ty.items()}

    def evaluate(batches: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            outs = [run(b) for b in batches]
            per = torch.cat([_losses(p, y, var) for p, y in outs])
            resid = torch.cat([p[:, 0] - y["dur"] for p, y in outs])
        return per, resid

    best, best_state, bad = float("inf"), None, 0
    for _epoch in range(cfg.epochs):
        sq, n = 0.0, 0
        for i in rng.permutation(len(train_b)):
            pred, yy = run(train_b[i])
            lo = _losses(pred, yy, var)
            opt.zero_grad()
            lo.sum(1).mean().backward()
            opt.step()
            sq += float(((pred[:, 0].detach() - yy["dur"]) ** 2).sum())
            n += len(yy["dur"])
        var = torch.tensor(max(sq / max(n, 1), 1e-4))
        v_loss = float(evaluate(val_b)[0].sum(1).mean())
        if v_loss < best - 1e-4:
            best, bad = v_loss, 0
            best_state = {k: t.clone() for k, t in model.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    test_days = np.flatnonzero(test)
    per, resid = evaluate([test_days[i : i + 4 * cfg.batch_days]
                           for i in range(0, len(test_days), 4 * cfg.batch_days)])  # fmt: skip
    # Gaussian term with the plug-in variance of the test residuals (mean: 0.5 log(2 pi e mse)).
    mse = max(float((resid**2).mean()), 1e-8)
    per[:, 0] = 0.5 * math.log(2 * math.pi * mse) + resid**2 / (2 * mse)
    return per.numpy(), best


__all__ = ["OUTCOMES", "VARIANTS", "FitConfig", "GainResult", "measure"]
