"""Scales by name."""

from __future__ import annotations

import pytest

from automod_cli.errors import UserError
from automod_cli.model.scales import group_ranges, parse_scales


def test_resolution_ranges():
    assert parse_scales("4-8", 7) == [0, 1]
    assert parse_scales("16-64", 7) == [2, 3, 4]
    assert parse_scales("32", 7) == [3]
    assert parse_scales("4-8,64", 7) == [0, 1, 4]
    assert parse_scales("all", 7) == list(range(7))
    assert parse_scales(" Coarse ", 7) == [0, 1]


def test_paper_groups_at_256():
    assert group_ranges(7) == {"coarse": [0, 1], "middle": [2, 3, 4], "fine": [5, 6]}
    assert parse_scales("fine", 9) == [5, 6, 7, 8]  # 1024²: 128 and up


def test_groups_of_small_models():
    # 64²: fine is the top resolution, middle runs from 16 to the one below.
    assert group_ranges(5) == {"coarse": [0, 1], "middle": [2, 3], "fine": [4]}
    assert parse_scales("middle,fine", 4) == [2, 3]


@pytest.mark.parametrize("spec", ["128", "4-128", "3", "12", "8-4", "big", "", "4-x"])
def test_bad_scales_list_what_the_model_has(spec):
    with pytest.raises(UserError) as e:
        parse_scales(spec, 5)
    assert "4, 8, 16, 32, 64" in str(e.value) or "range" in str(e.value)


def test_empty_group_is_an_error():
    with pytest.raises(UserError, match="empty"):
        parse_scales("middle", 3)  # a 16² model has no middle
