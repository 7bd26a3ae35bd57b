"""The version an edit is given when its author did not raise it: always a newer one."""

from __future__ import annotations

import pytest

from ucf.stores.models import is_newer_version, next_version


@pytest.mark.parametrize(
    ("version", "following"),
    [
        ("1.0.3", "1.0.4"),
        ("1.0.9", "1.0.10"),
        ("v2", "v3"),
        ("1.0.0-rc1", "1.0.0-rc2"),
        ("1.0.0-rc9", "1.0.1"),  # "-rc10" sorts below "-rc9": the release moves instead
        ("draft", "draft.1"),
        ("", "1"),
    ],
)
def test_the_next_version_is_always_newer(version: str, following: str) -> None:
    assert next_version(version) == following
    assert is_newer_version(following, version)
