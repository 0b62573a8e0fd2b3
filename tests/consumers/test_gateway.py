"""Storage Gateway RefreshCache: retries with backoff, then reports (moto has no Storage Gateway)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from consumers.errors import GatewayRefreshError
from consumers.gateway import (
    backoff_delay,
    refresh_file_share,
    refresh_file_shares,
    refresh_folders,
)

SHARE_A = "arn:aws:storagegateway:us-east-1:123456789012:share/share-1A2B3C4D"
SHARE_B = "arn:aws:storagegateway:us-east-1:123456789012:share/share-5E6F7A8B"
FOLDERS = ["/genome-lab/exp-0042"]


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("storagegateway", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def expect_refresh(stubber: Stubber, arn: str) -> None:
    stubber.add_response(
        "refresh_cache",
        {"FileShareARN": arn, "NotificationId": f"note-{arn[-8:]}"},
        {"FileShareARN": arn, "FolderList": FOLDERS, "Recursive": True},
    )


def test_a_prefix_maps_to_its_folder_on_the_share() -> None:
    assert refresh_folders("genome-lab/exp-0042/") == FOLDERS


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_delay(n) for n in (1, 2, 3, 4, 5, 6, 10)] == [1, 2, 4, 8, 16, 20, 20]


def test_throttling_and_busy_gateway_are_retried(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("refresh_cache", "ThrottlingException", "Rate exceeded")
    stubber.add_client_error(
        "refresh_cache",
        "InvalidGatewayRequestException",
        "The specified file share is already refreshing",
    )
    expect_refresh(stubber, SHARE_A)
    sleeps: list[float] = []
    result = refresh_file_share(client, SHARE_A, FOLDERS, max_attempts=5, sleep=sleeps.append)
    assert result.ok and result.notification_id == "note-1A2B3C4D" and result.attempts == 3
    assert sleeps == [1.0, 2.0]


def test_gives_up_after_max_attempts_keeping_the_cause(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    for _ in range(3):
        stubber.add_client_error("refresh_cache", "ThrottlingException", "Rate exceeded")
    sleeps: list[float] = []
    with pytest.raises(GatewayRefreshError, match="after 3 attempts") as caught:
        refresh_file_share(client, SHARE_A, FOLDERS, max_attempts=3, sleep=sleeps.append)
    assert caught.value.__cause__ is not None
    assert sleeps == [1.0, 2.0]


def test_other_errors_are_not_retried(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("refresh_cache", "InvalidGatewayRequestException", "busy")
    stubber.add_client_error("refresh_cache", "AccessDeniedException", "no")
    with pytest.raises(GatewayRefreshError, match="AccessDeniedException"):
        refresh_file_share(client, SHARE_A, FOLDERS, max_attempts=5, sleep=lambda _: None)


def test_one_failing_share_does_not_stop_the_others(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("refresh_cache", "ThrottlingException", "Rate exceeded")
    stubber.add_client_error("refresh_cache", "ThrottlingException", "Rate exceeded")
    expect_refresh(stubber, SHARE_B)
    results = refresh_file_shares(
        client, [SHARE_A, SHARE_B], FOLDERS, max_attempts=2, sleep=lambda _: None
    )
    assert [r.ok for r in results] == [False, True]
    assert "ThrottlingException" in (results[0].error or "")


def test_the_folder_refreshed_is_where_gateway_clients_read_the_files() -> None:
    from consumers.gateway import folders_to_refresh

    assert folders_to_refresh("instr/2024/run 1/", "instr/2024--run_1", copied=False) == [
        "/instr/2024/run 1"
    ]
    assert folders_to_refresh("instr/2024/run 1/", "instr/2024--run_1", copied=True) == [
        "/instr/2024--run_1"
    ]
