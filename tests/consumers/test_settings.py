"""ConsumerSettings: built from the reference Lambda's environment, validated at construction."""

from __future__ import annotations

import pytest

from consumers.errors import SettingsError
from consumers.settings import (
    DEFAULT_MESSAGE,
    ENV_VARS,
    REQUIRED_ENV_VARS,
    ConsumerSettings,
)

TOPIC = "arn:aws:sns:us-east-1:123456789012:edp-alerts"
SHARE = "arn:aws:storagegateway:us-east-1:123456789012:share/share-1A2B3C4D"
ENV = {
    "WORKFLOW_NAME": "instrument",
    "QUARANTINE_BUCKET_NAME": "quarantine-bucket",
    "SNS_TOPIC_ARN": TOPIC,
    "QUILT_URL": "https://quilt.example.com/",
}


def test_the_required_env_vars_alone_give_the_defaults() -> None:
    settings = ConsumerSettings.from_env(ENV)
    assert settings.workflow == "instrument"
    assert settings.quarantine_bucket == "quarantine-bucket"
    assert settings.quilt_url == "https://quilt.example.com"
    assert settings.registry is None
    assert settings.file_share_arns == ()
    assert settings.default_metadata == {}
    assert settings.message == DEFAULT_MESSAGE
    assert settings.date_key is None


def test_every_optional_env_var_is_read_and_normalised() -> None:
    settings = ConsumerSettings.from_env(
        {
            **ENV,
            "REGISTRY": "s3://registry-bucket/",
            "FILE_SHARE_ARNS": f" {SHARE} , ,{SHARE.replace('1A2B3C4D', '5E6F7A8B')}",
            "PACKAGE_METADATA": '{"Author": "EDP", "ProjectID": "YYD"}',
            "PACKAGE_DATE_KEY": "Date",
            "PACKAGE_MESSAGE": "Packaged by the lab robot",
        }
    )
    assert settings.registry == "registry-bucket"
    assert settings.file_share_arns == (SHARE, SHARE.replace("1A2B3C4D", "5E6F7A8B"))
    assert settings.default_metadata == {"Author": "EDP", "ProjectID": "YYD"}
    assert settings.date_key == "Date"
    assert settings.message == "Packaged by the lab robot"


def test_empty_workflow_means_registry_default() -> None:
    settings = ConsumerSettings.from_env({**ENV, "WORKFLOW_NAME": " "})
    assert settings.workflow is None
    assert settings.workflow_argument is ...
    assert ConsumerSettings.from_env(ENV).workflow_argument == "instrument"


def test_the_required_env_vars_are_the_quarantine_bucket_topic_and_url() -> None:
    assert set(REQUIRED_ENV_VARS) == {"QUARANTINE_BUCKET_NAME", "SNS_TOPIC_ARN", "QUILT_URL"}
    assert set(REQUIRED_ENV_VARS) <= set(ENV_VARS)
    assert {"WORKFLOW_NAME", "REGISTRY", "FILE_SHARE_ARNS", "PACKAGE_METADATA"} <= set(ENV_VARS)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"QUARANTINE_BUCKET_NAME": ""},
            "missing required environment variable.*QUARANTINE_BUCKET_NAME",
        ),
        ({"SNS_TOPIC_ARN": None, "QUILT_URL": None}, "SNS_TOPIC_ARN, QUILT_URL"),
        (
            {"QUARANTINE_BUCKET_NAME": "Bad_Bucket"},
            "quarantine_bucket: 'Bad_Bucket' is not a valid S3 bucket",
        ),
        ({"SNS_TOPIC_ARN": "edp-alerts"}, "sns_topic_arn: 'edp-alerts' is not an SNS topic ARN"),
        ({"QUILT_URL": "quilt.example.com"}, "quilt_url: .* must start with https://"),
        ({"REGISTRY": "quarantine-bucket"}, "use a separate bucket"),
        ({"FILE_SHARE_ARNS": "share-1"}, "file_share_arns: 'share-1' is not a file share ARN"),
        ({"PACKAGE_METADATA": "{bad"}, "PACKAGE_METADATA is not valid JSON"),
        ({"PACKAGE_METADATA": "[1]"}, "PACKAGE_METADATA must be a JSON object"),
    ],
)
def test_invalid_env_names_the_setting(changes: dict[str, str | None], message: str) -> None:
    env = {**ENV, **changes}
    with pytest.raises(SettingsError, match=message):
        ConsumerSettings.from_env({k: v for k, v in env.items() if v is not None})


def test_settings_built_directly_are_validated_too() -> None:
    with pytest.raises(SettingsError, match="not JSON-serialisable"):
        ConsumerSettings(
            quarantine_bucket="quarantine-bucket",
            sns_topic_arn=TOPIC,
            quilt_url="https://q.example.com",
            default_metadata={"when": object()},
        )
    with pytest.raises(SettingsError, match="gateway_max_attempts"):
        ConsumerSettings(
            quarantine_bucket="quarantine-bucket",
            sns_topic_arn=TOPIC,
            quilt_url="https://q.example.com",
            gateway_max_attempts=0,
        )


def test_settings_are_frozen() -> None:
    settings = ConsumerSettings.from_env(ENV)
    with pytest.raises(AttributeError):
        settings.workflow = "other"  # type: ignore[misc]


def test_the_added_files_are_settings_inline_or_s3_with_edps_example_as_defaults() -> None:
    from consumers.extras import SUMMARIZE_AUTO
    from consumers.settings import DEFAULT_QUILTIGNORE, DEFAULT_README

    default = ConsumerSettings.from_env({**ENV, "AWS_LAMBDA_FUNCTION_NAME": "lab-packager"})
    assert (default.readme_text, default.quiltignore_text) == (DEFAULT_README, DEFAULT_QUILTIGNORE)
    assert default.summarize == SUMMARIZE_AUTO and default.summarize_chart is None
    assert default.function_name == "lab-packager"
    for text in (".DS_*", "Icon", "._*", ".TemporaryItems", ".Trashes", ".VolumeIcon.icns"):
        assert text in DEFAULT_QUILTIGNORE.splitlines()  # EDP's documented ignore list
    for placeholder in ("${date}", "${function}", "${workflow}"):
        assert placeholder in DEFAULT_README

    custom = ConsumerSettings.from_env(
        {
            **ENV,
            "PACKAGE_README": "s3://lab-texts/readme.md",
            "PACKAGE_QUILTIGNORE": "*.tmp",
            "PACKAGE_SUMMARIZE": '["a.csv", {"path": "chart.json", "title": "Counts"}]',
            "PACKAGE_SUMMARIZE_CHART": "chart.vl.json",
        }
    )
    assert custom.readme_text == "s3://lab-texts/readme.md"
    assert custom.quiltignore_text == "*.tmp"
    assert custom.summarize == ["a.csv", {"path": "chart.json", "title": "Counts"}]
    assert custom.summarize_chart == "chart.vl.json"
    assert ConsumerSettings.from_env({**ENV, "PACKAGE_SUMMARIZE": "none"}).summarize is None
    from_s3 = ConsumerSettings.from_env({**ENV, "PACKAGE_SUMMARIZE": "s3://lab-texts/s.json"})
    assert from_s3.summarize == "s3://lab-texts/s.json"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"PACKAGE_SUMMARIZE": "{bad"}, "PACKAGE_SUMMARIZE is not valid JSON"),
        ({"PACKAGE_SUMMARIZE": '{"a": 1}'}, "PACKAGE_SUMMARIZE must be a JSON list"),
        ({"PACKAGE_SUMMARIZE": "s3://bucket-only"}, "summarize: 's3://bucket-only' is not"),
        ({"PACKAGE_README": "s3://texts/folder/"}, "readme_text: 's3://texts/folder/' is not"),
        ({"PACKAGE_QUILTIGNORE": "s3:///key"}, "quiltignore_text: 's3:///key' is not"),
    ],
)
def test_bad_added_file_settings_name_the_setting(changes: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        ConsumerSettings.from_env({**ENV, **changes})
