"""Pure checks over parsed CloudFormation templates: IAM statements, Lambda environments."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

POLICY_RESOURCE_TYPES = {
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::S3::BucketPolicy",
}
NO_VALUE = {"Ref": "AWS::NoValue"}


def branches(value: Any) -> Iterator[Any]:
    """Every value an ``Fn::If`` may produce (both sides, nested), without ``AWS::NoValue``."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _, when_true, when_false = value["Fn::If"]
        yield from branches(when_true)
        yield from branches(when_false)
    elif value != NO_VALUE:
        yield value


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_documents(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, document) for every identity, resource and trust policy in the template."""
    for logical_id, resource in template.get("Resources", {}).items():
        kind = resource["Type"]
        properties = resource.get("Properties", {})
        if kind == "AWS::IAM::Role":
            yield f"{logical_id} trust policy", properties["AssumeRolePolicyDocument"]
            for policy in as_list(properties.get("Policies", [])):
                for option in branches(policy):
                    yield f"{logical_id} {option['PolicyName']}", option["PolicyDocument"]
        elif kind in POLICY_RESOURCE_TYPES:
            yield logical_id, properties["PolicyDocument"]


def statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for where, document in policy_documents(template):
        for statement in as_list(document["Statement"]):
            for option in branches(statement):
                yield where, option


def is_wildcard_action(action: Any) -> bool:
    return isinstance(action, str) and (action == "*" or action.endswith(":*"))


def wildcard_grants(template: dict[str, Any]) -> list[str]:
    """Allow statements that grant ``*`` actions (``*`` or ``service:*``) on ``*`` resources."""
    found = []
    for where, statement in statements(template):
        if statement.get("Effect") != "Allow":
            continue
        actions = as_list(statement.get("Action", []))
        resources = [r for value in as_list(statement.get("Resource", [])) for r in branches(value)]
        if any(map(is_wildcard_action, actions)) and "*" in resources:
            found.append(f"{where}: {statement.get('Sid', '(no Sid)')}")
    return found


def lambda_functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    }


def environment_names(function_properties: dict[str, Any]) -> set[str]:
    """Names the template sets (possibly only under a condition) in a function's environment."""
    return set(function_properties.get("Environment", {}).get("Variables", {}))
