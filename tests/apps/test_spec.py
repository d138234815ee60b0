"""App specifications (glan_ray.apps): building, validation naming the field, dict and YAML round
trips, fingerprints, diffs, the simulator's own spec and the ``app-spec`` command."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import numpy as np
import pytest
import tomllib

from glan_ray import schema
from glan_ray.apps import (
    AppSpec,
    ContextSpec,
    FeaturesSpec,
    ProfileSpec,
    SpecError,
    StatisticSpec,
    load_spec,
    obs_feature_names,
    plpm_spec,
    spec_from_yaml,
)
from glan_ray.cli import main
from glan_ray.sim.config import SimConfig
from glan_ray.sim.observation import build_obs

ROOT = pathlib.Path(__file__).resolve().parents[2]


def small() -> dict[str, Any]:
    """A two-page app with one feature of each kind, as YAML would give it."""
    return {
        "name": "shop",
        "pages": ["home", "deals"],
        "features": {
            "profile": [
                {"name": "tier", "kind": "categorical", "cardinality": 3},
                {"name": "spend", "kind": "numeric", "unit": "USD", "scale": 100},
            ],
            "statistics": [
                {"quantity": "usage", "windows": [7, 28], "scale": 3600},
                {"quantity": "page_dur", "windows": [7], "pages": ["deals"], "scale": 600},
                {"quantity": "last_exit"},
            ],
            "context": [
                {"quantity": "hour", "scale": 24},
                {"quantity": "input", "name": "cart_items", "unit": "count", "scale": 10},
                {"quantity": "today_dur", "scale": 600},
            ],
        },
        "session_gap_s": 900,
        "dropoff_s": 5,
    }


def test_a_small_spec_lays_out_its_observation():
    s = AppSpec.from_dict(small())
    assert s.pages == ("home", "deals") and s.n_pages == 2 and s.reward == "usage_time"
    assert s.group_features == {
        "profile": ("tier", "spend"),
        "statistics": ("usage_7d", "usage_28d", "page_dur_7d_deals", "last_exit_home",
                       "last_exit_deals"),
        "context": ("hour", "cart_items", "today_dur_home", "today_dur_deals"),
    }  # fmt: skip
    assert s.obs_dim == 11 and obs_feature_names(s) == s.obs_features
    # a categorical enters obs as index / (cardinality - 1); the rest as value / scale
    assert s.obs_scales == (2.0, 100.0, 3600.0, 3600.0, 600.0, 1.0, 1.0, 24.0, 10.0, 600.0, 600.0)
    assert s.obs_units == ("category", "USD", "s", "s", "s", "0/1", "0/1", "h", "count", "s", "s")
    assert isinstance(s.features.profile[1], ProfileSpec) and s.features.profile[1].scale == 100.0


def test_python_construction_equals_the_dict_form():
    built = AppSpec(
        name="shop",
        pages=("home", "deals"),
        features=FeaturesSpec(
            profile=(ProfileSpec("tier", "categorical", cardinality=3),
                     ProfileSpec("spend", unit="USD", scale=100.0)),
            statistics=(StatisticSpec("usage", (7, 28), scale=3600.0),
                        StatisticSpec("page_dur", (7,), pages=("deals",), scale=600.0),
                        StatisticSpec("last_exit")),
            context=(ContextSpec("hour", scale=24.0),
                     ContextSpec("input", name="cart_items", unit="count", scale=10.0),
                     ContextSpec("today_dur", scale=600.0)),
        ),
        session_gap_s=900.0,
        dropoff_s=5.0,
    )
    assert built == AppSpec.from_dict(small())


@pytest.mark.parametrize("make", [lambda: AppSpec.from_dict(small()), plpm_spec])
def test_round_trips_through_dict_and_yaml(make, tmp_path):
    s = make()
    assert AppSpec.from_dict(s.to_dict()) == s
    path = tmp_path / "app.yaml"
    path.write_text(s.to_yaml())
    assert load_spec(path) == s and load_spec(str(path)).fingerprint() == s.fingerprint()


def _reverse_keys(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _reverse_keys(x[k]) for k in reversed(list(x))}
    return [_reverse_keys(v) for v in x] if isinstance(x, list) else x


def test_fingerprint_is_stable_across_spellings_and_changes_with_the_spec():
    base = AppSpec.from_dict(small()).fingerprint()
    assert len(base) == 12 and int(base, 16) >= 0
    assert AppSpec.from_dict(_reverse_keys(small())).fingerprint() == base  # key order
    same = small()
    same["session_gap_s"] = 900.0  # 900 and 900.0 are one spec
    same["reward"] = "usage_time"  # a default written out
    same["features"]["profile"][1]["transform"] = "none"
    same["features"]["profile"][1]["source"] = "spend"  # the name itself
    assert AppSpec.from_dict(same).fingerprint() == base
    assert plpm_spec().fingerprint() == plpm_spec().fingerprint() != base

    def changed(edit) -> str:
        d = small()
        edit(d)
        return AppSpec.from_dict(d).fingerprint()

    edits = [
        lambda d: d.update(dropoff_s=6),
        lambda d: d.update(pages=["deals", "home"]),  # page order is action order
        lambda d: d["features"]["statistics"][0].update(windows=[28, 7]),
        lambda d: d["features"]["context"][1].update(scale=5),
        lambda d: d["features"]["profile"][0].update(cardinality=4),
        lambda d: d.update(reward="watch_time"),
    ]
    prints = {changed(e) for e in edits}
    assert len(prints) == len(edits) and base not in prints


def _set(path: str, value: Any):
    """An edit of ``small()`` setting the key at a dotted path (``features.profile.0.kind``);
    the value ``DELETE`` removes the key."""

    def edit(d: dict[str, Any]) -> None:
        *head, last = path.split(".")
        for k in head:
            d = d[int(k)] if k.isdigit() else d[k]
        if value is DELETE:
            del d[last]
        elif last.isdigit():
            d[int(last)] = value
        else:
            d[last] = value

    return edit


DELETE = object()
PROFILE_KEYS = "['name', 'kind', 'cardinality', 'unit', 'scale', 'transform', 'source']"
BAD: list[tuple[str, Any, str]] = [
    # the app
    ("pages", ["home", "deals", "home"], "AppSpec.pages: duplicate page 'home'"),
    ("pages", ["home"], "AppSpec.pages: an app needs at least 2 pages; got ['home']"),
    ("pages", "home,deals", "AppSpec.pages must be a list; got str"),
    ("pages.1", "Deals", "AppSpec.pages[1]: 'Deals' is not a name: use lowercase letters"),
    ("name", "my shop", "AppSpec.name: 'my shop' is not a name"),
    ("colour", "red", "AppSpec: unknown key(s) ['colour']; the valid keys are ['name', 'pages', "
     "'features', 'session_gap_s', 'dropoff_s', 'reward']"),
    ("dropoff_s", DELETE, "AppSpec: missing key(s) ['dropoff_s']"),
    ("session_gap_s", 0, "AppSpec.session_gap_s must be > 0 and <= 86400; got 0.0"),
    ("session_gap_s", 100_000, "AppSpec.session_gap_s must be > 0 and <= 86400; got 100000.0"),
    ("dropoff_s", "5", "AppSpec.dropoff_s must be > 0 and <= 86400; got '5'"),
    ("reward", "clicks",
     "AppSpec.reward: unknown 'clicks'; expected one of ['usage_time', 'watch_time']"),
    ("features", [], "AppSpec.features must be a mapping; got list"),
    ("features.extra", [], "AppSpec.features: unknown key(s) ['extra']; the valid keys are "
     "['profile', 'statistics', 'context']"),
    ("features", {}, "AppSpec.features: no feature: an observation needs one"),
    ("features.context.0", {"quantity": "input", "name": "tier", "unit": "1"},
     "AppSpec.features: duplicate feature 'tier' (AppSpec.features.profile[0] and "
     "AppSpec.features.context[0])"),
    # profile x
    ("features.profile", {"name": "tier"}, "AppSpec.features.profile must be a list; got dict"),
    ("features.profile.0", "tier", "AppSpec.features.profile[0] must be a mapping; got str"),
    ("features.profile.0.cardnality", 3,
     f"AppSpec.features.profile[0]: unknown key(s) ['cardnality']; the valid keys are "
     f"{PROFILE_KEYS}"),
    ("features.profile.0.name", DELETE, "AppSpec.features.profile[0]: missing key(s) ['name']"),
    ("features.profile.0.cardinality", 1,
     "AppSpec.features.profile[0].cardinality must be an integer >= 2; got 1"),
    ("features.profile.0.cardinality", 2.0,
     "AppSpec.features.profile[0].cardinality must be an integer >= 2; got 2.0"),
    ("features.profile.0.unit", "s",
     "AppSpec.features.profile[0].unit: only a numeric feature has one"),
    ("features.profile.0.transform", "log1p",
     "AppSpec.features.profile[0].transform: only a numeric feature has one"),
    ("features.profile.0.kind", "ordinal",
     "AppSpec.features.profile[0].kind: unknown 'ordinal'; expected one of ['categorical', "
     "'numeric']"),
    ("features.profile.1.cardinality", 3,
     "AppSpec.features.profile[1].cardinality: only a categorical feature has one"),
    ("features.profile.1.unit", DELETE,
     "AppSpec.features.profile[1].unit must be a non-empty string; got None"),
    ("features.profile.1.scale", 0, "AppSpec.features.profile[1].scale must be > 0; got 0.0"),
    ("features.profile.1.transform", "sqrt",
     "AppSpec.features.profile[1].transform: unknown 'sqrt'; expected one of ['none', 'log1p']"),
    ("features.profile.1.source", "Spend", "AppSpec.features.profile[1].source: 'Spend' is not"),
    # statistics t
    ("features.statistics.0.quantity", "dwell",
     "AppSpec.features.statistics[0].quantity: unknown 'dwell'; expected one of ['usage', "
     "'sessions', 'page_dur', 'page_entries', 'page_share', 'last_exit']"),
    ("features.statistics.0.windows", [],
     "AppSpec.features.statistics[0].windows: 'usage' needs at least one window"),
    ("features.statistics.0.windows", [7, 0],
     "AppSpec.features.statistics[0].windows[1] must be an integer >= 1; got 0"),
    ("features.statistics.0.windows", [7, 7],
     "AppSpec.features.statistics[0].windows: duplicate window in [7, 7]"),
    ("features.statistics.2.windows", [7],
     "AppSpec.features.statistics[2].windows: 'last_exit' has no window; got [7]"),
    ("features.statistics.0.pages", ["home"],
     "AppSpec.features.statistics[0].pages: 'usage' is not per page"),
    ("features.statistics.1.pages", ["mall"],
     "AppSpec.features.statistics[1].pages: unknown page 'mall'; the pages are ['home', "
     "'deals']"),
    ("features.statistics.1.pages", [],
     "AppSpec.features.statistics[1].pages must name a page"),
    ("features.statistics.1.pages", ["deals", "deals"],
     "AppSpec.features.statistics[1].pages: duplicate page 'deals'"),
    ("features.statistics.0.scale", -1,
     "AppSpec.features.statistics[0].scale must be > 0; got -1.0"),
    # context c
    ("features.context.0.quantity", "minute",
     "AppSpec.features.context[0].quantity: unknown 'minute'; expected one of ['hour', "
     "'hour_sin', 'hour_cos', 'weekend', 'entries_today', 'today_dur', 'today_usage', "
     "'prev_dropoff', 'input']"),
    ("features.context.1.name", DELETE,
     "AppSpec.features.context[1].name: None is not a name"),
    ("features.context.1.unit", DELETE,
     "AppSpec.features.context[1].unit must be a non-empty string; got None"),
    ("features.context.1.pages", ["home"],
     "AppSpec.features.context[1].pages: an input is one value, not per page"),
    ("features.context.0.unit", "h",
     "AppSpec.features.context[0].unit: only an input has one (it is 'hour''s own)"),
    ("features.context.0.pages", ["home"],
     "AppSpec.features.context[0].pages: 'hour' is not per page"),
    ("features.context.2.scale", float("nan"),
     "AppSpec.features.context[2].scale must be > 0; got nan"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[b[0] for b in BAD])
def test_every_invalid_field_is_refused_by_name(path, value, message):
    d = small()
    _set(path, value)(d)
    with pytest.raises(SpecError) as e:
        AppSpec.from_dict(d)
    assert message in str(e.value), str(e.value)
    assert isinstance(e.value, ValueError)  # the CLI's client-mistake class (exit 2)


def test_errors_from_python_construction_name_the_class():
    with pytest.raises(SpecError, match=r"^ProfileSpec.cardinality must be an integer >= 2; got 1"):
        ProfileSpec("tier", "categorical", cardinality=1)
    with pytest.raises(SpecError, match=r"^StatisticSpec.scale must be > 0; got 0.0"):
        StatisticSpec("usage", (7,), scale=0)
    with pytest.raises(SpecError, match=r"^AppSpec.pages: duplicate page 'a'"):
        AppSpec("app", ("a", "a"), FeaturesSpec(context=(ContextSpec("hour"),)), 60.0, 5.0)


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: shop\npages: [home, deals\n")
    with pytest.raises(SpecError, match=f"^{bad}: AppSpec: not valid YAML"):
        load_spec(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(SpecError, match=f"^{bad}: AppSpec must be a mapping; got list"):
        load_spec(bad)
    where = "x.yaml: AppSpec.features.profile[0].cardinality must be an integer >= 2; got 1"
    with pytest.raises(SpecError, match=re.escape(where)):
        spec_from_yaml(AppSpec.from_dict(small()).to_yaml().replace("cardinality: 3",
                                                                    "cardinality: 1"), "x.yaml")


def test_diff_names_every_difference_in_words():
    a = AppSpec.from_dict(small())
    assert a.diff(a) == [] and a.diff(AppSpec.from_dict(_reverse_keys(small()))) == []
    d = small()
    d["pages"] = ["home", "deals", "mall"]
    d["dropoff_s"] = 3
    d["features"]["profile"][0]["cardinality"] = 5
    d["features"]["context"].pop(1)
    b = AppSpec.from_dict(d)
    assert a.diff(b) == [
        "pages: ['home', 'deals'] vs ['home', 'deals', 'mall']",
        "dropoff_s: 5.0 vs 3.0",
        "features.profile[0] (tier): cardinality 3 vs 5",
        "features.context[1] (input cart_items): only in this spec",
        "observation: 11 vs 12 features; only in this spec: ['cart_items']; only in the other: "
        "['last_exit_mall', 'today_dur_mall']",
    ]
    assert b.diff(a)[-2] == "features.context[1] (input cart_items): only in the other"
    d = small()
    d["features"]["context"][2]["scale"] = 60  # after an insertion: aligned by quantity
    d["features"]["context"].insert(0, {"quantity": "weekend"})
    assert a.diff(AppSpec.from_dict(d))[:2] == [
        "features.context[0] (weekend): only in the other",
        "features.context[2 vs 3] (today_dur): scale 600.0 vs 60.0",
    ]
    d = small()
    d["features"]["context"][1] = {"quantity": "input", "name": "coupons", "unit": "count"}
    assert a.diff(AppSpec.from_dict(d))[0] == (
        "features.context[1] (input cart_items vs input coupons): name 'cart_items' vs "
        "'coupons', scale 10.0 vs 1.0"
    )
    d = small()
    d["features"]["statistics"][0]["windows"] = [28, 7]
    assert a.diff(AppSpec.from_dict(d)) == [
        "features.statistics[0] (usage): windows [7, 28] vs [28, 7]",
        "observation: 11 vs 11 features, in another order",
    ]
    assert plpm_spec().diff(a)[:2] == ["name: 'plpm' vs 'shop'",
                                       "pages: ['featured', 'explore', 'following'] vs "
                                       "['home', 'deals']"]  # fmt: skip


def test_the_plpm_spec_is_the_simulators_world():
    s = plpm_spec()
    assert s.pages == schema.PAGES
    assert s.obs_features == schema.OBS_FEATURES and s.obs_dim == schema.OBS_DIM
    assert obs_feature_names(s) == schema.OBS_FEATURES
    cfg = SimConfig()
    assert s.dropoff_s == cfg.tau and s.reward == "usage_time"
    cards = {p.name: p.cardinality for p in s.features.profile if p.kind == "categorical"}
    assert cards == {"activity": len(cfg.activity_probs), "age": cfg.n_ages,
                     "region": cfg.n_regions}  # fmt: skip
    assert plpm_spec() is s  # read once


def _plpm_raw(rng: np.random.Generator, b: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """build_obs's arguments for ``b`` random entries, and each obs feature's raw value (before
    its scale) named as the spec names it."""
    n = schema.N_PAGES
    user = {"activity": rng.integers(0, 4, b), "age": rng.integers(0, 6, b),
            "region": rng.integers(0, 8, b), "social_degree": rng.exponential(20, b)}
    stats = {f"{q}_{w}d": rng.uniform(0, 9000, b) for q in ("usage", "sessions") for w in (7, 30)}
    stats |= {f"{q}_{w}d": rng.uniform(0, 900, (b, n)) for q in ("page_dur", "page_entries")
              for w in (7, 14)}
    args = {"user": user, "stats": stats, "hour": rng.uniform(0, 24, b), "weekday": 5,
            "entries_today": rng.integers(0, 9, b), "live_count": rng.integers(0, 6, b),
            "today_dur": rng.uniform(0, 3000, (b, n)), "prev_dropoff": rng.integers(0, 2, b),
            "last_exit": rng.integers(0, n, b)}  # fmt: skip
    share = stats["page_entries_7d"] / stats["page_entries_7d"].sum(1, keepdims=True)
    raw: dict[str, np.ndarray] = {
        **{k: user[k] for k in ("activity", "age", "region")},
        "social_degree_log": np.log1p(user["social_degree"]),
        **{k: stats[k] for k in ("usage_7d", "usage_30d", "sessions_7d", "sessions_30d")},
        "hour": args["hour"], "hour_sin": np.sin(2 * np.pi * args["hour"] / 24),
        "hour_cos": np.cos(2 * np.pi * args["hour"] / 24), "weekend": np.ones(b),
        "entries_today": args["entries_today"], "live_count": args["live_count"],
        "today_usage": args["today_dur"].sum(1), "prev_dropoff": args["prev_dropoff"],
    }  # fmt: skip
    for i, p in enumerate(schema.PAGES):
        raw[f"page_share_7d_{p}"] = share[:, i]
        raw[f"page_dur_14d_{p}"] = stats["page_dur_14d"][:, i]
        raw[f"last_exit_{p}"] = (args["last_exit"] == i).astype(float)
        raw[f"today_dur_{p}"] = args["today_dur"][:, i]
    return args, raw


def test_the_plpm_specs_scales_are_build_obs_scales():
    s = plpm_spec()
    args, raw = _plpm_raw(np.random.default_rng(0), 64)
    obs = build_obs(**args)
    expected = np.stack([raw[n] / sc for n, sc in zip(s.obs_features, s.obs_scales, strict=True)],
                        axis=1)  # fmt: skip
    np.testing.assert_allclose(obs, expected, rtol=1e-6, atol=1e-6)


def test_the_yaml_is_package_data():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "*.yaml" in cfg["tool"]["setuptools"]["package-data"]["glan_ray.apps"]


def test_cli_summarises_a_good_spec_and_refuses_a_bad_one(tmp_path, capsys):
    assert main(["app-spec", str(ROOT / "glan_ray" / "apps" / "plpm.yaml")]) == 0
    out = capsys.readouterr().out
    for line in (f"app plpm (fingerprint {plpm_spec().fingerprint()})",
                 "pages (3, in action order): featured, explore, following",
                 "observation: 28 features", "profile x      4: activity, age, region",
                 "statistics t  13: usage_7d", "context c     11: hour", "session gap: 1800 s",
                 "drop-off threshold τ: 40 s", "reward: usage_time"):  # fmt: skip
        assert line in out, out
    bad = tmp_path / "bad.yaml"
    bad.write_text(AppSpec.from_dict(small()).to_yaml().replace("[home, deals]",
                                                                "[home, deals, home]"))
    assert main(["app-spec", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"glan-ray app-spec: error: {bad}: AppSpec.pages: duplicate page 'home'" in err
    assert main(["app-spec", str(tmp_path / "none.yaml")]) == 2
    assert "No such file" in capsys.readouterr().err


def test_cli_help_explains_the_command():
    from glan_ray.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["app-spec"]  # type: ignore[union-attr]
    text = sub.format_help()
    assert "FILE" in text and "fingerprint" in text and "naming the field" in text


def test_the_docs_example_is_the_plpm_spec():
    text = (ROOT / "docs" / "apps.md").read_text()
    block = text.split("## The simulator's app", 1)[1].split("```yaml\n", 1)[1].split("```")[0]
    assert spec_from_yaml(block, "docs/apps.md") == plpm_spec()
    assert f"app plpm (fingerprint {plpm_spec().fingerprint()})" in text
