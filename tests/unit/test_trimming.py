"""The oldest entry a stream must keep: the smallest of every group's next need."""

from shared.messaging.trimming import GroupPosition, next_id, oldest_needed, server_version


def test_next_id_is_the_following_sequence_number():
    assert next_id("1700000000000-0") == "1700000000000-1"
    assert next_id("5-41") == "5-42"


def test_no_group_needs_nothing():
    assert oldest_needed([]) is None


def test_a_pending_entry_is_kept_even_behind_the_last_delivered():
    groups = [GroupPosition(last_delivered="100-0", oldest_pending="40-3")]
    assert oldest_needed(groups) == "40-3"


def test_the_laggiest_group_decides_and_ids_compare_as_numbers():
    groups = [
        GroupPosition(last_delivered="1000-0", oldest_pending=None),
        GroupPosition(last_delivered="999-9", oldest_pending=None),
        GroupPosition(last_delivered="20000-0", oldest_pending="10000-0"),
    ]
    assert oldest_needed(groups) == "999-10"


def test_server_version_reads_major_and_minor():
    assert server_version({"redis_version": "8.2.3"}) == (8, 2)
    assert server_version({"redis_version": "7.0.15"}) < (8, 2)
