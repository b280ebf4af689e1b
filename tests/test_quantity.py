"""Kubernetes quantities parse to exact values; anything else is refused."""

from decimal import Decimal

import pytest

from app.quantity import QuantityError, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", "0.5"),
        ("2", "2"),
        ("1.5", "1.5"),
        ("2Gi", str(2 * 2**30)),
        ("512Mi", str(2**29)),
        ("1k", "1000"),
        ("1M", "1000000"),
        ("1e3", "1000"),
        ("100u", "0.0001"),
        (".5", "0.5"),
    ],
)
def test_quantities_parse_exactly(text: str, value: str) -> None:
    assert parse_quantity(text) == Decimal(value)


@pytest.mark.parametrize("text", ["", "abc", "1Gb", "1.2.3", "Gi", "--1"])
def test_malformed_quantities_are_refused(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)
