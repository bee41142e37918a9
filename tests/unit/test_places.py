"""rules.places: how place names, personal names and addresses are folded for matching."""

from __future__ import annotations

import pytest

from rules.places import address_key, fold_text, place_key, same_address, sponsor_address


@pytest.mark.parametrize("name", ["St. Paul", "st paul", "ST.  PAUL", " St.Paul "])
def test_place_key_ignores_case_dots_and_spacing(name: str) -> None:
    assert place_key(name) == "st paul"


def test_place_key_strips_accents_only_from_non_ascii_text() -> None:
    assert place_key("San José") == place_key("san jose") == "san jose"
    assert place_key("Añasco") == "anasco"


def test_place_key_keeps_hyphens_but_fold_text_does_not() -> None:
    assert place_key("Wilkes-Barre") == "wilkes-barre"
    assert fold_text("Wilkes-Barre") == "wilkes barre"
    assert fold_text("María-José  GARCÍA") == "maria jose garcia"


def addr(**parts: str | None) -> dict[str, str | None]:
    return {"street": "12 Oak St", "unit": "Apt 2", "city": "Dallas", "state": "TX", "zip": "75201",
            "quality": "valid", **parts}


def test_address_key_folds_each_part_and_ignores_quality() -> None:
    assert address_key(addr()) == ("12 oak st", "apt 2", "dallas", "tx", "75201")
    assert address_key(addr(street="12 OAK ST.", city="dallas ", quality="missing_unit")) == address_key(addr())
    assert address_key({}) == ("", "", "", "", "")


def test_same_address_needs_both_and_compares_folded() -> None:
    assert same_address(addr(), addr(city="DALLAS"))
    assert not same_address(addr(), addr(unit=None))
    assert not same_address(addr(), None)
    assert not same_address(None, None)


def test_sponsor_address_is_orrs_release_address() -> None:
    assert sponsor_address({"release": {"sponsor": {"address": addr()}}}) == addr()
    assert sponsor_address({"status": "in_care"}) is None
    assert sponsor_address({"release": None}) is None
    assert sponsor_address(None) is None
