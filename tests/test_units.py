"""Byte sizes: read as users write them, shown in the largest binary unit."""

from __future__ import annotations

import pytest
from superposition_harness.units import BudgetError, format_size, parse_size


@pytest.mark.parametrize("text, size", [("4GiB", 4 << 30), ("512MiB", 512 << 20), ("1.5G", 3 << 29),
                                        ("8", 8 << 30), ("100 MB", 10**8), ("2048k", 2 << 20),
                                        ("1tib", 1 << 40), (" 3gib ", 3 << 30), ("4096B", 4096)])
def test_sizes_are_read_in_binary_and_decimal_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GiB", "4 gigs", "-1GiB", "0", "1e3", "four"])
def test_unreadable_sizes_name_the_form_to_use(text):
    with pytest.raises(BudgetError, match=r"4GiB|positive"):
        parse_size(text)


def test_format_size_picks_the_largest_unit():
    assert format_size(4 << 30) == "4.0 GiB"
    assert format_size(1536 << 20) == "1.5 GiB"
    assert format_size(3 << 20) == "3.0 MiB"
    assert format_size(10) == "10 B"
