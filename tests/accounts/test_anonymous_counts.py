"""Requests without a valid key are counted per minute, client, route and status: counts, not rows."""

import datetime as dt

import pytest

from accounts.models import AnonymousRequestCount
from accounts.services import AnonymousClients, anonymous_request_count_increment, client_group, printable

pytestmark = pytest.mark.django_db
UTC = dt.UTC
MINUTE = dt.datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def counts():
    return sorted(AnonymousRequestCount.objects.values_list("minute", "client", "route", "status_code", "count"))


def test_requests_in_one_minute_raise_one_rows_count():
    for second in (0, 15, 59):
        anonymous_request_count_increment(
            route="/api/v1/classify",
            status_code=401,
            client_ip="203.0.113.7",
            now=MINUTE + dt.timedelta(seconds=second, microseconds=5),
        )
    anonymous_request_count_increment(route="unmatched", status_code=404, client_ip="203.0.113.7", now=MINUTE)
    anonymous_request_count_increment(
        route="/api/v1/classify", status_code=401, client_ip="203.0.113.7", now=MINUTE + dt.timedelta(minutes=1)
    )

    assert counts() == [
        (MINUTE, "203.0.113.7", "/api/v1/classify", 401, 3),
        (MINUTE, "203.0.113.7", "unmatched", 404, 1),
        (MINUTE + dt.timedelta(minutes=1), "203.0.113.7", "/api/v1/classify", 401, 1),
    ]


@pytest.mark.parametrize(
    "client_ip, group",
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.1", "198.51.100.1"),
        ("not-an-ip", AnonymousRequestCount.UNKNOWN_CLIENT),
        ("1.2.3.4\x00", AnonymousRequestCount.UNKNOWN_CLIENT),
        (None, AnonymousRequestCount.UNKNOWN_CLIENT),
    ],
)
def test_clients_are_grouped_by_address_or_ipv6_network(client_ip, group):
    assert client_group(client_ip) == group


def test_the_ipv6_network_size_is_the_setting(settings):
    settings.ACCOUNTS_ANONYMOUS_IPV6_PREFIX_BITS = 48
    assert client_group("2001:db8:1:2::1") == "2001:db8:1::/48"


def test_one_ipv6_host_spraying_its_64_makes_one_row():
    for host in range(50):
        anonymous_request_count_increment(
            route="unmatched", status_code=404, client_ip=f"2001:db8::{host:x}", now=MINUTE
        )
    assert counts() == [(MINUTE, "2001:db8::/64", "unmatched", 404, 50)]


def test_clients_beyond_the_cap_per_minute_share_one_overflow_row(settings):
    settings.ACCOUNTS_ANONYMOUS_CLIENTS_PER_MINUTE = 3
    for client in range(10):
        for _ in range(2):
            anonymous_request_count_increment(
                route="unmatched", status_code=404, client_ip=f"198.51.100.{client}", now=MINUTE
            )
    anonymous_request_count_increment(route="unmatched", status_code=404, client_ip="198.51.100.0", now=MINUTE)

    rows = {client: count for _, client, _, _, count in counts()}
    assert rows == {"198.51.100.0": 3, "198.51.100.1": 2, "198.51.100.2": 2, AnonymousRequestCount.OVERFLOW_CLIENT: 14}
    assert AnonymousRequestCount.objects.count() == settings.ACCOUNTS_ANONYMOUS_CLIENTS_PER_MINUTE + 1


def test_the_cap_holds_across_processes_sharing_the_database(settings):
    settings.ACCOUNTS_ANONYMOUS_CLIENTS_PER_MINUTE = 2
    first, second = AnonymousClients(), AnonymousClients()
    assert first.admit("198.51.100.1", minute=MINUTE) == "198.51.100.1"
    anonymous_request_count_increment(route="unmatched", status_code=404, client_ip="198.51.100.1", now=MINUTE)
    anonymous_request_count_increment(route="unmatched", status_code=404, client_ip="198.51.100.2", now=MINUTE)
    assert second.admit("198.51.100.3", minute=MINUTE) == AnonymousRequestCount.OVERFLOW_CLIENT
    assert second.admit("198.51.100.3", minute=MINUTE + dt.timedelta(minutes=1)) == "198.51.100.3"


def test_a_new_minute_admits_new_clients_again(settings):
    settings.ACCOUNTS_ANONYMOUS_CLIENTS_PER_MINUTE = 1
    for minute in (MINUTE, MINUTE + dt.timedelta(minutes=1)):
        for client in ("198.51.100.1", "198.51.100.2"):
            anonymous_request_count_increment(route="unmatched", status_code=404, client_ip=client, now=minute)
    assert [(client, count) for _, client, _, _, count in counts()] == [
        ("198.51.100.1", 1),
        (AnonymousRequestCount.OVERFLOW_CLIENT, 1),
        ("198.51.100.1", 1),
        (AnonymousRequestCount.OVERFLOW_CLIENT, 1),
    ]


def test_printable_strips_control_characters():
    assert printable("a\x00b\nc\x1b[31md\x7f\x85e") == "abc[31mde"
