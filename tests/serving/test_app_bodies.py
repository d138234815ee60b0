"""The Serve app's bodies and OpenAPI document follow its app spec: the PLPM app's are exactly
what they were before bodies came from specs (``plpm_openapi.json``, its /openapi.json then),
and a 4-page app's show its pages, profile fields, statistics windows and its ``cart_items``
input, with the same strictness (unknown fields, wrong pages and missing inputs refused)."""

from __future__ import annotations

import json
import math
import pathlib

import pytest
from pydantic import ValidationError

from glan_ray.apps import load_spec, plpm_spec
from glan_ray.serving.app_bodies import bodies_for
from glan_ray.serving.routes import make_api

FOURPAGE_PATH = pathlib.Path(__file__).parents[2] / "glan_ray/apps/fourpage.yaml"
FOURPAGE = load_spec(FOURPAGE_PATH)
PAGES4 = ["featured", "explore", "following", "mall"]


def _openapi(spec) -> dict:
    return make_api(None, bodies_for(spec)).openapi()  # type: ignore[arg-type]  # docs only


def test_the_plpm_apps_openapi_is_unchanged():
    before = json.loads((pathlib.Path(__file__).parent / "plpm_openapi.json").read_text())
    assert _openapi(plpm_spec()) == before


def test_a_four_page_apps_openapi_shows_its_spec():
    doc = _openapi(FOURPAGE)
    schemas = doc["components"]["schemas"]
    entry = schemas["Entry"]
    assert entry["required"] == ["event_id", "day", "hour", "cart_items"]
    cart = entry["properties"]["cart_items"]
    assert cart["type"] == "integer" and cart["minimum"] == 0 and "count" in cart["description"]
    assert "live_count" not in entry["properties"]
    end = schemas["SessionEnd"]["properties"]
    assert end["exit_page"]["enum"] == PAGES4
    assert end["page_durations_s"]["minItems"] == end["page_durations_s"]["maxItems"] == 4
    assert end["video_views"]["minItems"] == 4
    assert str(PAGES4) in end["video_views"]["description"]
    feats = schemas["DayFeatures"]["properties"]
    assert {"city_tier", "gender", "tenure_days", "followers", "usage_3d", "usage_14d",
            "sessions_3d", "page_dur_7d", "page_entries_7d"} <= set(feats)  # fmt: skip
    assert not {"age", "region", "activity", "social_degree"} & set(feats)
    assert feats["city_tier"]["exclusiveMaximum"] == 5 and feats["city_tier"]["minimum"] == 0
    assert "days" in feats["tenure_days"]["description"] and feats["tenure_days"]["minimum"] == 0
    assert (
        feats["page_entries_7d"]["maxItems"] == 4 and "mall" in feats["page_dur_7d"]["description"]
    )
    assert set(schemas["DayFeatures"]["required"]) == set(feats)
    day = doc["paths"]["/users/{user_id}/day"]["post"]
    assert day["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/StartDay")
    last = schemas["StartDay"]["properties"]["last_exit_page"]["anyOf"][0]
    assert last["enum"] == PAGES4
    assert "mall" in schemas["EntryResponse"]["properties"]["page"]["description"]
    # every body's example is a valid request of the app
    bodies = bodies_for(FOURPAGE)
    for model in (bodies.start_day, bodies.entry, bodies.session_end):
        model.model_validate(model.model_json_schema()["examples"][0])


def _day(**over) -> dict:
    feats = bodies_for(FOURPAGE).start_day.model_json_schema()["examples"][0]["features"]
    return {"event_id": "d", "day": 1, "features": {**feats, **over}}


def _problem(model, body: dict) -> str:
    with pytest.raises(ValidationError) as e:
        model.model_validate(body)
    return str(e.value)


def test_a_four_page_apps_bodies_are_strict():
    b = bodies_for(FOURPAGE)
    entry = {"event_id": "e", "day": 1, "hour": 9.0, "cart_items": 2}
    assert b.entry.model_validate(entry).cart_items == 2  # type: ignore[attr-defined]
    assert b.entry.model_validate({**entry, "cart_items": 2.0}).cart_items == 2  # type: ignore[attr-defined]
    assert "cart_items" in _problem(b.entry, {k: v for k, v in entry.items() if k != "cart_items"})
    assert "cart_items" in _problem(b.entry, {**entry, "cart_items": -1})
    assert "cart_items" in _problem(b.entry, {**entry, "cart_items": "2"})  # strict
    assert "live_count" in _problem(b.entry, {**entry, "live_count": 1})  # not this app's
    b.start_day.model_validate(_day())
    assert "city_tier" in _problem(b.start_day, _day(city_tier=5))
    assert "city_tier" in _problem(b.start_day, _day(city_tier=True))
    assert "tenure_days" in _problem(b.start_day, _day(tenure_days=math.nan))
    assert "tenure_days" in _problem(b.start_day, _day(tenure_days=-1.0))  # log1p'd: >= 0
    assert "page_dur_7d" in _problem(b.start_day, _day(page_dur_7d=[1.0, 2.0, 3.0]))  # 3 pages
    assert "age" in _problem(b.start_day, _day(age=1))  # the PLPM app's field
    assert "last_exit_page" in _problem(b.start_day, {**_day(), "last_exit_page": "live"})
    assert b.start_day.model_validate({**_day(), "last_exit_page": "mall"})
    end = {"event_id": "s", "day": 1, "page_durations_s": [1.0, 0.0, 0.0, 5.0],
           "video_views": [1, 0, 0, 2], "n_switches": 1, "usage_time": 9.0,
           "exit_page": "mall"}  # fmt: skip
    ok = b.session_end.model_validate({**end, "page_seq": ["featured", "mall"]})
    assert ok.page_seq_conflict("featured") is None
    assert "page_seq" in str(ok.page_seq_conflict("explore"))  # starts on another page
    assert "exit_page" in _problem(b.session_end, {**end, "exit_page": "live"})
    assert "page_seq" in _problem(b.session_end, {**end, "page_seq": ["featured", "shop"]})
    assert "video_views" in _problem(b.session_end, {**end, "video_views": [1, 0, 0]})


def test_the_plpm_app_keeps_its_hand_written_bodies():
    from glan_ray.serving import bodies

    b = bodies_for(plpm_spec())
    assert (b.start_day, b.entry, b.session_end) == (bodies.StartDay, bodies.Entry,
                                                     bodies.SessionEnd)  # fmt: skip
    assert bodies_for(FOURPAGE) is bodies_for(load_spec(FOURPAGE_PATH))  # made once per spec
