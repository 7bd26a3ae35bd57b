"""Every numeric or yes/no variable is read by name: a bad value says which and what it takes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ucf.service.settings import Settings, served_public_url, served_root_path


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("UCF_WEBHOOK_RPM", "lots"),
        ("UCF_WEBHOOK_RPM", "0"),
        ("UCF_WEBHOOK_RPM", "-3"),
        ("UCF_WEBHOOK_MAX_BYTES", "0"),
        ("UCF_WEBHOOK_MAX_BYTES", "256KB"),
        ("UCF_MAX_CONCURRENT_POLLS", "0"),
        ("UCF_MAX_CONCURRENT_POLLS", "2.5"),
        ("UCF_DESCRIPTOR_HISTORY", "0"),
        ("UCF_DESCRIPTOR_HISTORY", "all"),
    ],
)
def test_a_count_that_is_not_a_positive_whole_number_is_refused_by_name(
    tmp_path: Path, name: str, value: str
) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be a whole number of at least 1, got"):
        Settings.from_env({name: value}, data_dir=tmp_path)


@pytest.mark.parametrize(
    ("value", "read"),
    [
        ("https://ucf.example.com/?", "https://ucf.example.com"),
        ("https://ucf.example.com/#", "https://ucf.example.com"),
        (" https://ucf.example.com/ ", "https://ucf.example.com"),
        ("HTTPS://ucf.example.com", "https://ucf.example.com"),
        ("http://[::1]:8080/", "http://[::1]:8080"),
        # Behind API Gateway a REST API's stage is part of the webhook URLs: kept.
        (
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod/",
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod",
        ),
    ],
)
def test_the_public_url_is_read_as_the_base_of_the_urls_ucf_hands_out(
    tmp_path: Path, value: str, read: str
) -> None:
    """Only a trailing "/" was stripped: ``…/?`` made every webhook URL ``…/?/api/…``
    in the processes that read the variable themselves (Lambda, ``ucf worker``)."""
    settings = Settings.from_env({"UCF_PUBLIC_URL": value}, data_dir=tmp_path)

    assert settings.public_url == read


@pytest.mark.parametrize(
    "value",
    [
        "ucf.example.com",
        "ftp://ucf.example.com",
        "https://",
        "https://x.test/?a=1",
        "https://x.test#top",
    ],
)
def test_a_public_url_that_cannot_be_a_base_is_refused_by_name(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError, match=r"^UCF_PUBLIC_URL must"):
        Settings.from_env({"UCF_PUBLIC_URL": value}, data_dir=tmp_path)


@pytest.mark.parametrize(
    "value",
    [
        "https://ucf.example.com:99999",
        "https://ucf.example.com:abc",
        "http://[::1",
        "https://admin:hunter2@ucf.example.com",
    ],
)
def test_a_public_url_whose_host_cannot_be_reached_is_refused_by_name_everywhere(
    tmp_path: Path, value: str
) -> None:
    """A port out of range or no number, and a user name and password, were taken (the
    last shown in every webhook URL); an unclosed IPv6 literal said only "Invalid IPv6
    URL", naming neither the flag nor the variable."""
    with pytest.raises(ValueError, match=r"^UCF_PUBLIC_URL must"):
        Settings.from_env({"UCF_PUBLIC_URL": value}, data_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^--public-url must"):
        served_public_url(value)


@pytest.mark.parametrize(
    ("value", "url", "root"),
    [
        ("https://ucf.example.com", "https://ucf.example.com", ""),
        ("https://ucf.example.com/", "https://ucf.example.com", ""),
        ("https://tools.example.com/ucf/", "https://tools.example.com/ucf", "/ucf"),
        (
            "http://127.0.0.1:8443/team-a/ucf_1.2~x",
            "http://127.0.0.1:8443/team-a/ucf_1.2~x",
            "/team-a/ucf_1.2~x",
        ),
    ],
)
def test_ucf_serve_takes_a_public_url_with_a_path_as_the_prefix_it_serves_under(
    value: str, url: str, root: str
) -> None:
    assert served_public_url(value) == url
    assert served_root_path(url) == root


@pytest.mark.parametrize(
    "value",
    [
        "https://x.test/my%20ucf",
        "https://x.test/ü",
        "https://x.test/a//b",
        "https://x.test/?a=1",
        "https://x.test/ucf/..",
        "https://x.test/./ucf",
        "https://x.test/ucf/../admin",
    ],
)
def test_ucf_serve_refuses_a_prefix_that_could_never_match_a_request(value: str) -> None:
    """uvicorn compares ``root_path`` with the decoded path and sends it as ASCII; a
    browser resolves ``.`` and ``..`` segments away, so links would leave the prefix."""
    with pytest.raises(ValueError, match=r"^--public-url must have (a plain path|no query)"):
        served_public_url(value)


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "a month", "3651"])
def test_a_retention_outside_0_to_3650_days_is_refused_not_a_purge_of_everything(
    tmp_path: Path, value: str
) -> None:
    """A negative retention made every signal expire as it was stored."""
    with pytest.raises(ValueError, match=r"^UCF_SIGNAL_RETENTION_DAYS must be a number of days"):
        Settings.from_env({"UCF_SIGNAL_RETENTION_DAYS": value}, data_dir=tmp_path)


def test_the_scheduler_switch_takes_yes_and_no_words_and_refuses_others(tmp_path: Path) -> None:
    def scheduler(value: str) -> bool:
        return Settings.from_env({"UCF_SCHEDULER": value}, data_dir=tmp_path).scheduler

    assert [scheduler(v) for v in ("0", "off", "false", "no", "1", "on", "yes", "")] == [
        False, False, False, False, True, True, True, True,
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"^UCF_SCHEDULER must be one of"):
        scheduler("disabled")


def test_valid_values_and_defaults_are_read_as_before(tmp_path: Path) -> None:
    defaults = Settings.from_env({}, data_dir=tmp_path)
    assert (defaults.webhook_requests_per_minute, defaults.webhook_max_bytes) == (100, 262144)
    assert (defaults.max_concurrent_polls, defaults.signal_retention) == (4, timedelta(days=30))
    tuned = Settings.from_env(
        {"UCF_WEBHOOK_RPM": " 6 ", "UCF_WEBHOOK_MAX_BYTES": "2000",
         "UCF_MAX_CONCURRENT_POLLS": "8", "UCF_SIGNAL_RETENTION_DAYS": "0.5"},
        data_dir=tmp_path,
    )  # fmt: skip
    assert (tuned.webhook_requests_per_minute, tuned.webhook_max_bytes) == (6, 2000)
    assert (tuned.max_concurrent_polls, tuned.signal_retention) == (8, timedelta(hours=12))


def test_descriptor_history_is_read_with_fifty_by_default(tmp_path: Path) -> None:
    """``UCF_DESCRIPTOR_HISTORY``: how many earlier versions each connector keeps."""
    assert Settings.from_env({}, data_dir=tmp_path).descriptor_history == 50
    read = Settings.from_env({"UCF_DESCRIPTOR_HISTORY": " 7 "}, data_dir=tmp_path)
    assert read.descriptor_history == 7


def test_the_webhook_secret_retention_is_read_with_thirty_days_by_default(tmp_path: Path) -> None:
    """``UCF_WEBHOOK_SECRET_RETENTION_DAYS``: how long a webhook secret the connector no
    longer verifies with is kept (was a constant)."""
    assert Settings.from_env({}, data_dir=tmp_path).webhook_secret_retention == timedelta(days=30)
    read = Settings.from_env({"UCF_WEBHOOK_SECRET_RETENTION_DAYS": " 7 "}, data_dir=tmp_path)
    assert read.webhook_secret_retention == timedelta(days=7)


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "a month", "3651"])
def test_a_webhook_secret_retention_outside_0_to_3650_days_is_refused_by_name(
    tmp_path: Path, value: str
) -> None:
    with pytest.raises(
        ValueError, match=r"^UCF_WEBHOOK_SECRET_RETENTION_DAYS must be a number of days in"
    ):
        Settings.from_env({"UCF_WEBHOOK_SECRET_RETENTION_DAYS": value}, data_dir=tmp_path)
