"""The deploy commands of docs/deploying.md, run as written with the AWS CLI against a moto
server; then EDP's documented instrument example goes through the deployed consumer and is
pushed, not quarantined.

Only the bundle build (step 1, pip downloading Linux wheels) is replaced by placeholder zips: moto
never runs the Lambdas' code. The page's example ids (VPC, subnets, security group) are swapped
for ones that exist in moto, and the emitter template loses the one line moto cannot deploy. The consumer Lambda is then run in-process with the environment the
stack gave it, on the event its rule delivered.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from consumers.testing.aws import running_moto_server
from tests.deploy.deploy_support import REPO_ROOT, moto_compatible, write_placeholder_bundles
from tests.helpers import load_event

DEPLOYING = REPO_ROOT / "docs" / "deploying.md"
WATCHED_BUCKET = "instrument-bucket"
QUARANTINE_BUCKET = "instrument-quarantine"
ARTIFACTS = "edp-artifacts"
# The page's placeholders that must name real resources in moto.
EXAMPLE_IDS = ("vpc-0123456789abcdef0", "subnet-0aaa1111bbbb2222c", "subnet-0ddd3333eeee4444f")
EXAMPLE_GROUP = "sg-0123456789abcdef0"
# EDP's documented example: an instrument writes one folder per experiment.
EXPERIMENT_PREFIX = "instrument-name/experiment-id/"
EXPERIMENT_FILES = {
    "reads.csv": "sample,reads\nA1,1024\nA2,2048\n",
    "plate.tsv": "well\tsignal\nA1\t0.42\n",
    "run.log": "started\nfinished\n",
    ".DS_Store": "finder clutter",
}

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")]


def readme_block_after(heading: str, language: str = "sh") -> str:
    """The first ``language`` code block after ``heading`` in docs/deploying.md, dedented."""
    text = DEPLOYING.read_text(encoding="utf-8")
    assert heading in text, f"docs/deploying.md has no {heading!r}"
    after = text.split(heading, 1)[1]
    match = re.search(rf"^( *)```{language}\n(.*?)^\1```", after, re.MULTILINE | re.DOTALL)
    assert match is not None, f"no {language} block after {heading!r}"
    return textwrap.dedent(match.group(2))


def deploy_steps() -> dict[str, str]:
    """The page's "Deploy, as commands" block, split at its ``# <n>.`` comments."""
    steps: dict[str, str] = {}
    current = None
    for line in readme_block_after("## Deploy, as commands").splitlines():
        found = re.match(r"# (\d+[a-z]?)\. ", line)
        if found:
            current = found.group(1)
            steps[current] = ""
        if current is not None:
            steps[current] += line + "\n"
    return steps


@dataclass(frozen=True)
class Deployed:
    moto_url: str
    env: dict[str, str]
    output: str


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    workdir = tmp_path_factory.mktemp("readme-deploy")
    bundles = workdir / "dist" / "lambda"
    bundles.mkdir(parents=True)
    write_placeholder_bundles(bundles)
    # The commands use paths relative to the repository. The emitter template loses the one
    # line moto cannot deploy (see test_emitter_stack.py); the consumer template is as it is.
    (workdir / "workflows").symlink_to(REPO_ROOT / "workflows")
    templates = workdir / "deploy" / "templates"
    templates.mkdir(parents=True)
    emitter = (REPO_ROOT / "deploy" / "templates" / "emitter.yaml").read_text(encoding="utf-8")
    (templates / "emitter.yaml").write_text(moto_compatible(emitter), encoding="utf-8")
    (templates / "consumer.yaml").symlink_to(REPO_ROOT / "deploy" / "templates" / "consumer.yaml")
    with running_moto_server() as server, pytest.MonkeyPatch.context() as patch:
        env = {
            "AWS_ENDPOINT_URL": server.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "QUILT_DISABLE_USAGE_METRICS": "true",
            "QUILT_MINIMIZE_STDOUT": "true",
        }
        for name, value in env.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        script = _script_with_real_ids(workdir)
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=workdir,
            env={
                **os.environ,
                "BUCKET": WATCHED_BUCKET,
                "ARTIFACTS": ARTIFACTS,
                "EDP_DB_PASSWORD": "correct-horse-battery",
                "PYTHONPATH": str(REPO_ROOT),
            },
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        yield Deployed(server.url, env, result.stdout)


def _script_with_real_ids(workdir: Path) -> str:
    """Steps 2 to 5 of the page (and the bucket's EventBridge switch), with moto's ids."""
    ec2, s3 = boto3.client("ec2"), boto3.client("s3")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{n}.0/24", AvailabilityZone=zone)["Subnet"][
            "SubnetId"
        ]
        for n, zone in ((1, "us-east-1a"), (2, "us-east-1b"))
    ]
    group = ec2.create_security_group(GroupName="edp", Description="EDP", VpcId=vpc)["GroupId"]
    for bucket in (ARTIFACTS, WATCHED_BUCKET, QUARANTINE_BUCKET):  # "Before you deploy"
        s3.create_bucket(Bucket=bucket)
    steps = deploy_steps()
    assert set(steps) >= {"1", "2", "3", "4", "4b", "5"}, sorted(steps)
    script = "set -euo pipefail\n" + readme_block_after("3. EventBridge notifications")
    # Step 5 reads stack outputs: moto leaves them empty for stacks made through change sets,
    # which is how `aws cloudformation deploy` works, so the test reads the resources instead.
    script += "".join(steps[step] for step in ("2", "3", "4", "4b"))
    for example, real in zip(EXAMPLE_IDS, (vpc, *subnets), strict=True):
        assert example in script
        script = script.replace(example, real)
    assert EXAMPLE_GROUP in script
    return script.replace(EXAMPLE_GROUP, group)


def test_the_readme_names_a_workflow_that_exists_with_the_metadata_it_requires() -> None:
    import yaml

    consumer_step = deploy_steps()["4"]
    workflow = re.search(r"WorkflowName=(\S+)", consumer_step)
    metadata = re.search(r"'PackageMetadata=(\{.*?\})'", consumer_step)
    assert workflow is not None and metadata is not None
    config = yaml.safe_load((REPO_ROOT / "workflows" / "config.yml").read_text(encoding="utf-8"))
    assert workflow.group(1) in config["workflows"]
    schema = json.loads(
        (REPO_ROOT / "workflows" / "schemas" / f"{workflow.group(1)}.json").read_text()
    )
    given = set(json.loads(metadata.group(1)))
    date_key = re.search(r"PackageDateKey=(\S+)", consumer_step)
    if date_key is not None:
        given.add(date_key.group(1))
    assert set(schema["required"]) <= given


def test_edps_documented_example_goes_through_the_deployed_consumer_into_the_registry(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    import quilt3

    from consumers.auto_package import handler

    assert "Successfully created/updated stack - edp-instrument-packager" in deployed.output
    cfn, lam, events = (boto3.client(name) for name in ("cloudformation", "lambda", "events"))
    resources = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.list_stack_resources(StackName="edp-instrument-packager")[
            "StackResourceSummaries"
        ]
    }
    function = lam.get_function_configuration(FunctionName=resources["Function"])
    alerts = _queue_subscribed_to(resources["AlertTopic"])
    delivered = _delivered_by_the_rule(events, resources["ReadyEventsRule"])
    s3 = boto3.client("s3")
    for name, body in EXPERIMENT_FILES.items():
        s3.put_object(Bucket=WATCHED_BUCKET, Key=EXPERIMENT_PREFIX + name, Body=body.encode())

    for name, value in function["Environment"]["Variables"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", function["FunctionName"])
    result = handler(delivered, _Context(function["FunctionName"]))

    [outcome] = result["outcomes"]
    assert (outcome["status"], outcome["registry"]) == ("pushed", WATCHED_BUCKET), outcome
    package = quilt3.Package.browse(
        "instrument-name/experiment-id", registry=f"s3://{WATCHED_BUCKET}"
    )
    assert {"reads.csv", "plate.tsv", "run.log", "README.md", ".quiltignore"} <= {
        key for key, _ in package.walk()
    }
    assert ".DS_Store" not in package  # the default .quiltignore
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", package.meta["Date"])  # PackageDateKey=Date
    assert package.meta["StudyID"] == "ABC-23-023394"
    assert package._meta["workflow"]["id"] == "instrument"
    readme = package["README.md"].get_as_string()
    assert function["FunctionName"] in readme and "`instrument`" in readme
    assert "Contents" not in s3.list_objects_v2(Bucket=QUARANTINE_BUCKET)
    assert _messages(alerts) == []


@dataclass
class _Context:
    function_name: str
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "readme-deploy"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"


def _queue_subscribed_to(topic_arn: str) -> str:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="alerts-probe")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    boto3.client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
    return str(url)


def _messages(queue_url: str) -> list[Any]:
    response = boto3.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in response.get("Messages", [])]


def _delivered_by_the_rule(events: Any, rule: str) -> dict[str, Any]:
    """Put the documented event on the EDP bus; return what the consumer's rule delivers.

    moto cannot invoke a Lambda target, so the rule is pointed at a probe queue for this.
    """
    sqs = boto3.client("sqs")
    probe = sqs.create_queue(QueueName="rule-probe")["QueueUrl"]
    probe_arn = sqs.get_queue_attributes(QueueUrl=probe, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    (target,) = events.list_targets_by_rule(Rule=rule, EventBusName="edp")["Targets"]
    events.remove_targets(Rule=rule, EventBusName="edp", Ids=[target["Id"]])
    events.put_targets(Rule=rule, EventBusName="edp", Targets=[{"Id": "probe", "Arn": probe_arn}])
    documented = load_event("ready_as_documented")
    put = events.put_events(
        Entries=[
            {
                "Source": documented["source"],
                "DetailType": documented["detail-type"],
                "Detail": json.dumps(documented["detail"]),
                "Resources": documented["resources"],
                "EventBusName": "edp",
            }
        ]
    )
    assert put["FailedEntryCount"] == 0
    [delivered] = _messages(probe)
    assert delivered["detail"] == documented["detail"]
    return dict(delivered)
