"""``If-Match`` as RFC 9110 §13.1.1 reads it: a list of strong tags, ``*``, or nothing."""

from __future__ import annotations

from starlette.requests import Request

from ucf.web.preconditions import if_match


def _request(*values: str) -> Request:
    headers = [(b"if-match", value.encode("latin-1")) for value in values]
    return Request({"type": "http", "method": "PUT", "path": "/", "headers": headers})


def test_if_match_reads_lists_across_lines_and_keeps_only_strong_tags() -> None:
    """Several lines are one list; a weak tag or something that is no entity tag never
    matches (strong comparison), so a header of only those asks for what nothing meets."""
    assert if_match(_request()) is None
    assert if_match(_request("*")) is None
    assert if_match(_request('"a", "b"', ' "c" ')) == frozenset({'"a"', '"b"', '"c"'})
    assert if_match(_request('W/"a", "b"')) == frozenset({'"b"'})
    assert if_match(_request('W/"a"', "nonsense", '"x" "y"')) == frozenset()
    assert if_match(_request('nonsense, "ok"')) == frozenset({'"ok"'})
    assert if_match(_request('"a", *')) is None
