"""The configuration file: the shipped one validates, a bad one stops start-up clearly."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.errors import TryggError
from core.settings import SHIPPED_CONFIG
from dispatch.config import ConfigError, MunicipalityConfig, load_config


def document() -> dict[str, Any]:
    """A small valid configuration: one area, a day provider, a night patrol, a customer."""
    return {
        "municipality": "Test",
        "areas": [{"code": "bro", "name": "Bro"}],
        "providers": [
            {"code": "solrosen", "name": "Solrosen", "kind": "day",
             "teams": [{"code": "solrosen-bro", "name": "Solrosen Bro", "area": "bro",
                        "call_order": [{"name": "Jonas Ek", "phone": "+46 70 555 12 01"}]}]},
            {"code": "natt", "name": "Nattorganisationen", "kind": "night",
             "teams": [{"code": "nattpatrull-bro", "name": "Nattpatrull Bro", "area": "bro"}]},
        ],
        "customers": [
            {"code": "K-1", "name": "Gunnar Pettersson", "day_provider": "solrosen",
             "sites": [{"code": "K-1-1", "address": "Köpmanvägen 3", "area": "bro",
                        "devices": [{"cid": "100002"}]}]},
        ],
    }


def write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "municipality.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def load_edited(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> MunicipalityConfig:
    doc = document()
    edit(doc)
    return load_config(write(tmp_path, doc))


# -- the shipped file ------------------------------------------------------------------


def test_shipped_config_loads_with_the_day_and_night_times_of_the_routines() -> None:
    config = load_config(SHIPPED_CONFIG)

    assert config.shifts.timezone == "Europe/Stockholm"
    assert config.shifts.day_start == time(7, 0)
    assert config.shifts.night_start == time(22, 0)
    assert config.timers.reminder_after == timedelta(minutes=30)


def test_shipped_config_has_a_night_patrol_for_every_area() -> None:
    config = load_config(SHIPPED_CONFIG)

    night_areas = {t.area for p in config.providers if p.kind == "night" for t in p.teams}

    assert night_areas == {a.code for a in config.areas}


def test_shipped_config_gives_every_site_a_day_team_of_its_customers_provider() -> None:
    config = load_config(SHIPPED_CONFIG)
    teams = {p.code: {t.area for t in p.teams} for p in config.providers}

    uncovered = [s.code for c in config.customers for s in c.sites
                 if c.day_provider is None or not teams[c.day_provider] & {s.area, None}]

    assert uncovered == []


def test_shipped_config_has_a_call_order_for_every_team() -> None:
    config = load_config(SHIPPED_CONFIG)

    assert all(t.call_order for p in config.providers for t in p.teams)


def test_small_valid_document_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, document()))

    assert [c.code for c in config.customers] == ["K-1"]
    assert config.shifts.day_start == time(7, 0)


# -- bad files -------------------------------------------------------------------------


def test_site_in_an_unknown_area_is_refused(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["customers"][0]["sites"][0]["area"] = "brunna"

    with pytest.raises(ConfigError, match="site K-1-1: unknown area 'brunna'"):
        load_edited(tmp_path, edit)


def test_team_in_an_unknown_area_is_refused(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["providers"][0]["teams"][0]["area"] = "brunna"

    with pytest.raises(ConfigError, match="team solrosen-bro: unknown area 'brunna'"):
        load_edited(tmp_path, edit)


def test_device_listed_twice_is_refused(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["customers"].append(
            {"code": "K-2", "name": "Ingrid Karlsson", "day_provider": "solrosen",
             "sites": [{"code": "K-2-1", "address": "Ringvägen 21", "area": "bro",
                        "devices": [{"cid": "100002"}]}]})

    with pytest.raises(ConfigError, match="device 100002 is listed twice"):
        load_edited(tmp_path, edit)


def test_team_code_used_twice_is_refused(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["providers"][1]["teams"][0]["code"] = "solrosen-bro"

    with pytest.raises(ConfigError, match="team solrosen-bro is listed twice"):
        load_edited(tmp_path, edit)


def test_site_code_used_twice_is_refused(tmp_path: Path) -> None:
    # Imported, the second would silently take the first customer's site.
    def edit(doc: dict[str, Any]) -> None:
        doc["customers"].append(
            {"code": "K-2", "name": "Ingrid Karlsson", "day_provider": "solrosen",
             "sites": [{"code": "K-1-1", "address": "Ringvägen 21", "area": "bro"}]})

    with pytest.raises(ConfigError, match="site K-1-1 is listed twice"):
        load_edited(tmp_path, edit)


def test_customer_code_used_twice_is_refused(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["customers"].append({"code": "K-1", "name": "Ingrid Karlsson"})

    with pytest.raises(ConfigError, match="customer K-1 is listed twice"):
        load_edited(tmp_path, edit)


def test_night_team_without_an_area_is_refused(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        del doc["providers"][1]["teams"][0]["area"]

    with pytest.raises(ConfigError, match="night team nattpatrull-bro needs an area"):
        load_edited(tmp_path, edit)


def test_customer_with_an_unknown_day_provider_is_refused(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["customers"][0]["day_provider"] = "solrosen-ab"

    with pytest.raises(ConfigError, match="customer K-1: unknown day provider 'solrosen-ab'"):
        load_edited(tmp_path, edit)


def test_night_organisation_as_a_customers_day_provider_is_refused(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["customers"][0]["day_provider"] = "natt"

    with pytest.raises(ConfigError, match="unknown day provider 'natt'"):
        load_edited(tmp_path, edit)


@pytest.mark.parametrize("value", ["25:00", "seven"])
def test_bad_shift_time_is_refused_naming_the_field(tmp_path: Path, value: str) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["shifts"] = {"day_start": value}

    with pytest.raises(ConfigError, match=r"shifts\.day_start"):
        load_edited(tmp_path, edit)


def test_unknown_timezone_is_refused(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["shifts"] = {"timezone": "Europe/Stockholmm"}

    with pytest.raises(ConfigError, match="Europe/Stockholmm"):
        load_edited(tmp_path, edit)


def test_misspelt_field_is_refused_naming_it(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["shifts"] = {"nigth_start": "22:00"}

    with pytest.raises(ConfigError, match="nigth_start"):
        load_edited(tmp_path, edit)


def test_reminder_after_zero_minutes_is_refused(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["timers"] = {"reminder_after_min": 0}

    with pytest.raises(ConfigError, match="reminder_after_min"):
        load_edited(tmp_path, edit)


def test_device_id_that_is_not_digits_is_refused(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["customers"][0]["sites"][0]["devices"][0]["cid"] = "10-0002"

    with pytest.raises(ConfigError, match="cid"):
        load_edited(tmp_path, edit)


def test_file_that_is_not_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "municipality.yaml"
    path.write_text("areas: [\n  {code: bro", encoding="utf-8")

    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(path)


def test_yaml_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a valid configuration"):
        load_config(write(tmp_path, ["bro", "kungsangen"]))


def test_file_saved_in_latin_1_is_refused_with_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "municipality.yaml"
    path.write_bytes("areas:\n  - {code: kungsangen, name: Kungsängen}\n".encode("latin-1"))

    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)


def test_missing_file_is_refused_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"

    with pytest.raises(ConfigError, match=r"cannot read .*nowhere\.yaml"):
        load_config(path)


def test_config_error_is_a_trygg_error(tmp_path: Path) -> None:
    with pytest.raises(TryggError):
        load_config(tmp_path / "nowhere.yaml")


# -- partial documents (edits through the API) ----------------------------------------


def test_partial_document_may_refer_to_areas_and_providers_it_does_not_list() -> None:
    doc = {"customers": [{"code": "K-9", "name": "Ny Kund", "day_provider": "solrosen",
                          "sites": [{"code": "K-9-1", "address": "Bygatan 1", "area": "bro",
                                     "devices": [{"cid": "100009"}]}]}]}

    config = MunicipalityConfig.model_validate(doc, context={"partial": True})

    assert config.customers[0].sites[0].area == "bro"


def test_same_document_without_the_partial_flag_is_refused() -> None:
    doc = {"customers": [{"code": "K-9", "name": "Ny Kund", "day_provider": "solrosen"}]}

    with pytest.raises(ValueError, match="unknown day provider 'solrosen'"):
        MunicipalityConfig.model_validate(doc)


# -- codes become MQTT topic levels -----------------------------------------------------


def _set_team_code(code: str) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc["providers"][1]["teams"][0]["code"] = code
    return edit


@pytest.mark.parametrize("code", ["nattpatrull+bro", "a/b", "natt#", "natt bro", "",
                                  "natt\x00bro", "-natt", "n" * 65])
def test_team_code_that_is_no_topic_level_is_refused_naming_the_field(
        tmp_path: Path, code: str) -> None:
    with pytest.raises(ConfigError, match=r"providers\.1\.teams\.0\.code\n.*not a valid code"):
        load_edited(tmp_path, _set_team_code(code))


@pytest.mark.parametrize("code", ["nattpatrull-bro", "Natt_2", "team.7", "n" * 64])
def test_team_code_of_letters_digits_dots_dashes_and_underscores_loads(
        tmp_path: Path, code: str) -> None:
    config = load_edited(tmp_path, _set_team_code(code))

    assert config.providers[1].teams[0].code == code


@pytest.mark.parametrize(("field", "edit"), [
    ("areas.0.code", lambda d: d["areas"][0].update(code="b/ro")),
    ("providers.0.code", lambda d: d["providers"][0].update(code="sol+rosen")),
    ("customers.0.code", lambda d: d["customers"][0].update(code="K 1")),
    ("customers.0.sites.0.code", lambda d: d["customers"][0]["sites"][0].update(code="K-1/1")),
])
def test_other_registry_codes_that_are_no_topic_level_are_refused(
        tmp_path: Path, field: str, edit: Callable[[dict[str, Any]], None]) -> None:
    with pytest.raises(ConfigError, match=re.escape(field) + r"\n.*not a valid code"):
        load_edited(tmp_path, edit)


def test_every_code_of_the_shipped_config_is_a_topic_level() -> None:
    config = load_config(SHIPPED_CONFIG)
    codes = [a.code for a in config.areas] + [p.code for p in config.providers] + [
        t.code for p in config.providers for t in p.teams] + [
        c.code for c in config.customers] + [s.code for c in config.customers for s in c.sites]

    assert codes
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", code) for code in codes)
