"""A number setting holds a finite number as a person writes one."""

from __future__ import annotations

import copy

import pytest

from tests.web.support import ACME
from ucf.core.descriptor import ConnectorDescriptor
from ucf.service.errors import ValidationFailed
from ucf.service.instances import check_config


def _descriptor() -> ConnectorDescriptor:
    data = copy.deepcopy(ACME)
    data["configFields"].append({"key": "pageSize", "label": "Page size", "type": "number"})
    return ConnectorDescriptor.model_validate(data)


@pytest.mark.parametrize("value", ["30", "2.5", "-1", "1e3", ".5", 7, 2.5])
def test_a_finite_number_is_kept(value: object) -> None:
    config = check_config(_descriptor(), {"baseUrl": "https://acme.test", "pageSize": value})
    assert config["pageSize"] == str(value)


@pytest.mark.parametrize(
    "value", ["nan", "inf", "-Infinity", "1e999", "1_000", "0x10", "ten", float("nan")]
)
def test_what_float_takes_but_is_no_finite_number_is_refused(value: object) -> None:
    """``float()`` took every one of these (``1e999`` is infinite): a page or request was
    then given ``nan`` as a page size."""
    with pytest.raises(ValidationFailed) as refused:
        check_config(_descriptor(), {"baseUrl": "https://acme.test", "pageSize": value})
    assert [(p["path"], p["message"]) for p in refused.value.details] == [
        ("config.pageSize", "must be a number")
    ]
