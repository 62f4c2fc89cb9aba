"""Importing the registry into the database, idempotently, and looking teams up for routing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import Database
from core.settings import SHIPPED_CONFIG
from dispatch.config import ConfigError, MunicipalityConfig, load_config
from dispatch.models import Customer, Device, Site, Team
from dispatch.registry import ImportCounts, SqlTeamDirectory, import_config, registry_is_empty
from dispatch.routing import TeamRef


def shipped() -> dict[str, Any]:
    return load_config(SHIPPED_CONFIG).model_dump(mode="json")


def apply(db: Database, doc: dict[str, Any], *, partial: bool = False) -> ImportCounts:
    config = MunicipalityConfig.model_validate(doc, context={"partial": partial})
    return db.transaction(lambda s: import_config(s, config))


def one(db: Database, fn: Any) -> Any:
    return db.transaction(lambda s: fn(s))


def customer(s: Session, code: str) -> Customer | None:
    return s.execute(select(Customer).where(Customer.code == code)).scalar_one_or_none()


def team(s: Session, code: str) -> Team:
    return s.execute(select(Team).where(Team.code == code)).scalar_one()


def call_order(db: Database, code: str) -> list[tuple[int, str]]:
    return one(db, lambda s: [(m.position, m.name) for m in team(s, code).members])


# -- import ----------------------------------------------------------------------------


def test_first_import_creates_every_record_of_the_shipped_file(empty_db: Database) -> None:
    counts = apply(empty_db, shipped())

    # 2 areas, 4 providers, 6 teams, 8 customers, 9 sites, 11 devices (a lock among them)
    assert counts == ImportCounts(created=40, updated=0, unchanged=0)
    assert not one(empty_db, registry_is_empty)


def test_empty_database_reports_an_empty_registry(empty_db: Database) -> None:
    assert one(empty_db, registry_is_empty)


def test_importing_the_same_file_again_changes_nothing(db: Database) -> None:
    counts = apply(db, shipped())

    assert counts == ImportCounts(created=0, updated=0, unchanged=40)
    assert call_order(db, "solrosen-kungsangen") == [
        (1, "Maria Holm"), (2, "Ahmed Yusuf"), (3, "Lena Berg")]


def id_and_day_provider(s: Session) -> tuple[int, str | None]:
    c = s.execute(select(Customer).where(Customer.code == "K-1001")).scalar_one()
    return c.id, c.day_provider.code if c.day_provider else None


def test_edited_day_provider_updates_the_customer_in_place(db: Database) -> None:
    before_id, _ = one(db, id_and_day_provider)
    doc = shipped()
    doc["customers"][0]["day_provider"] = "trygga-hander"

    counts = apply(db, doc)

    assert counts == ImportCounts(created=0, updated=1, unchanged=39)
    assert one(db, id_and_day_provider) == (before_id, "trygga-hander")


def test_edited_call_order_replaces_the_teams_order_and_counts_as_an_update(
        db: Database) -> None:
    doc = shipped()
    doc["providers"][0]["teams"][0]["call_order"] = [
        {"name": "Lena Berg", "phone": None}, {"name": "Maria Holm", "phone": None}]

    counts = apply(db, doc)

    assert call_order(db, "solrosen-kungsangen") == [(1, "Lena Berg"), (2, "Maria Holm")]
    assert counts == ImportCounts(created=0, updated=1, unchanged=39)


def test_device_moved_to_another_site_follows_the_edit(db: Database) -> None:
    doc = shipped()
    k1005 = next(c for c in doc["customers"] if c["code"] == "K-1005")
    k1005["sites"][0]["devices"] = [{"cid": "100005"}, {"cid": "100099", "kind": "base_unit"}]

    counts = apply(db, doc)

    assert counts.created == 1
    assert one(db, lambda s: s.get(Device, "100099").site.code) == "K-1005-1"


def test_records_left_out_of_a_file_are_not_deleted(db: Database) -> None:
    doc = shipped()
    doc["customers"] = [c for c in doc["customers"] if c["code"] != "K-1008"]

    apply(db, doc)

    assert one(db, lambda s: customer(s, "K-1008") is not None)
    assert one(db, lambda s: s.get(Device, "100008") is not None)


# -- partial documents -----------------------------------------------------------------


def new_customer(day_provider: str | None = "solrosen", area: str = "bro") -> dict[str, Any]:
    return {"customers": [{
        "code": "K-2001", "name": "Elsa Ny", "day_provider": day_provider,
        "sites": [{"code": "K-2001-1", "address": "Bygatan 1", "area": area,
                   "devices": [{"cid": "200001"}]}],
    }]}


def site_facts(s: Session) -> tuple[str, str, str]:
    site = s.execute(select(Site).where(Site.code == "K-2001-1")).scalar_one()
    provider = site.customer.day_provider
    return site.area_code, provider.code if provider else "-", site.devices[0].cid


def test_partial_document_referring_to_existing_records_imports(db: Database) -> None:
    counts = apply(db, new_customer(), partial=True)

    assert counts == ImportCounts(created=3, updated=0, unchanged=0)
    assert one(db, site_facts) == ("bro", "solrosen", "200001")


def test_partial_document_with_an_unknown_day_provider_is_refused(db: Database) -> None:
    with pytest.raises(ConfigError, match="unknown day provider 'solrosen-ab'"):
        apply(db, new_customer(day_provider="solrosen-ab"), partial=True)

    assert one(db, lambda s: customer(s, "K-2001")) is None


def test_partial_document_naming_the_night_organisation_as_day_provider_is_refused(
        db: Database) -> None:
    with pytest.raises(ConfigError, match="unknown day provider 'nattorganisationen'"):
        apply(db, new_customer(day_provider="nattorganisationen"), partial=True)


def test_partial_document_listing_the_night_organisation_as_day_provider_is_refused(
        db: Database) -> None:
    doc = new_customer(day_provider="nattorganisationen")
    doc["providers"] = [{"code": "nattorganisationen", "kind": "night",
                         "name": "Nattorganisationen, Upplands-Bro kommun"}]

    with pytest.raises(ConfigError, match="unknown day provider 'nattorganisationen'"):
        apply(db, doc, partial=True)


def test_partial_document_with_an_unknown_area_imports_nothing(db: Database) -> None:
    with pytest.raises((ConfigError, IntegrityError)):
        apply(db, new_customer(area="brunna"), partial=True)

    assert one(db, lambda s: customer(s, "K-2001")) is None


# -- team lookups for routing ----------------------------------------------------------


def add_catch_all_team(db: Database) -> None:
    # Solrosen gets an area-less team whose code sorts before its area teams.
    apply(db, {"providers": [{
        "code": "solrosen", "name": "Solrosen Hemtjänst AB", "kind": "day",
        "teams": [{"code": "solrosen-a-jour", "name": "Solrosen jour"}],
    }], "areas": [{"code": "brunna", "name": "Brunna"}]}, partial=True)


def ref(db: Database, code: str) -> TeamRef:
    return one(db, lambda s: TeamRef(team(s, code).id, code))


def test_day_provider_with_a_team_per_area_gets_the_areas_team(db: Database) -> None:
    found = one(db, lambda s: SqlTeamDirectory(s).day_team("solrosen", "bro"))

    assert found == ref(db, "solrosen-bro")


def test_areas_own_team_wins_over_the_providers_area_less_team(db: Database) -> None:
    add_catch_all_team(db)

    found = one(db, lambda s: SqlTeamDirectory(s).day_team("solrosen", "kungsangen"))

    assert found == ref(db, "solrosen-kungsangen")


def test_area_less_team_answers_for_an_area_without_its_own_team(db: Database) -> None:
    add_catch_all_team(db)

    found = one(db, lambda s: SqlTeamDirectory(s).day_team("solrosen", "brunna"))

    assert found == ref(db, "solrosen-a-jour")


def test_provider_with_one_area_less_team_answers_for_every_area(db: Database) -> None:
    found = [one(db, lambda s, a=a: SqlTeamDirectory(s).day_team("kommunens-hemtjanst", a))
             for a in ("kungsangen", "bro")]

    assert found == [ref(db, "kommunens-hemtjanst")] * 2


def test_day_provider_without_a_team_for_the_area_gives_no_team(db: Database) -> None:
    apply(db, {"areas": [{"code": "brunna", "name": "Brunna"}]}, partial=True)

    assert one(db, lambda s: SqlTeamDirectory(s).day_team("solrosen", "brunna")) is None


def test_night_patrol_is_looked_up_by_area(db: Database) -> None:
    found = one(db, lambda s: SqlTeamDirectory(s).night_team("bro"))

    assert found == ref(db, "nattpatrull-bro")


def test_night_organisation_is_never_a_day_team(db: Database) -> None:
    assert one(db, lambda s: SqlTeamDirectory(s).day_team("nattorganisationen", "bro")) is None


# -- edits that leave fields out -------------------------------------------------------


def test_edit_of_a_teams_phone_keeps_its_call_order(db: Database) -> None:
    before = call_order(db, "solrosen-bro")
    doc = {"providers": [{"code": "solrosen", "name": "Solrosen Hemtjänst AB", "kind": "day",
                          "teams": [{"code": "solrosen-bro", "name": "Solrosen Bro",
                                     "phone": "+46 8 555 000 00"}]}]}

    counts = apply(db, doc, partial=True)

    assert counts.updated == 1
    assert one(db, lambda s: team(s, "solrosen-bro").phone) == "+46 8 555 000 00"
    assert call_order(db, "solrosen-bro") == before
    assert one(db, lambda s: team(s, "solrosen-bro").area_code) == "bro"


def test_edit_of_a_customers_name_keeps_their_day_provider(db: Database) -> None:
    apply(db, {"customers": [{"code": "K-1001", "name": "Astrid Lindqvist-Berg"}]},
          partial=True)

    found = one(db, lambda s: (customer(s, "K-1001").name,
                               customer(s, "K-1001").day_provider.code))
    assert found == ("Astrid Lindqvist-Berg", "solrosen")
