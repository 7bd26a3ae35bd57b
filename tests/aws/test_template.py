"""deploy/template.yaml deploys what the code expects: the store's table, the handlers, least privilege.

Nothing is deployed from here. cfn-lint checks the CloudFormation side
against the resource specifications; it does not run the SAM transform, so
the SAM-specific wiring (events, partial batch responses) is checked below
by reading the template against the code it deploys.
"""

from __future__ import annotations

import importlib
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import botocore.session
import pytest
import yaml  # type: ignore[import-untyped]
from botocore import xform_name

from ucf.aws.config import lambda_settings
from ucf.service.tryout import TRY_DEADLINE_SECONDS
from ucf.stores.dynamodb import keys, parse_dynamodb_url
from ucf.stores.dynamodb.table import GSI2, TTL_ATTRIBUTE

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "template.yaml"
MAKEFILE = ROOT / "deploy" / "Makefile"
FUNCTIONS = ("ApiFunction", "ScheduleFunction", "PollWorkerFunction", "DeliveryFunction")
STACK, REGION, ACCOUNT = "ucf-prod", "eu-west-1", "123456789012"


class CloudFormationLoader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML with CloudFormation's short-form intrinsics (``!Ref X`` → ``{"Ref": "X"}``)."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else "Condition" if suffix == "Condition" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CloudFormationLoader.add_multi_constructor("!", _intrinsic)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=CloudFormationLoader)
    return loaded


def resource(template: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"][name]
    return found


def properties(template: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = resource(template, name)["Properties"]
    return found


def statements(
    template: dict[str, Any], function: str, parameters: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The inline policy statements of a function as deployed with ``parameters`` (defaults
    otherwise, conditional ones included as if their condition held); managed policies by
    reference are skipped."""
    found = []
    for policy in properties(template, function).get("Policies", []):
        if isinstance(policy, dict) and "Statement" in policy:
            for statement in policy["Statement"]:
                if "Fn::If" in statement:
                    name, chosen, otherwise = statement["Fn::If"]
                    held = parameters is None or condition(template, name, parameters)
                    statement = chosen if held else otherwise
                if statement != {"Ref": "AWS::NoValue"}:
                    found.append(statement)
    return found


def actions(statement: dict[str, Any]) -> set[str]:
    value = statement["Action"]
    return {value} if isinstance(value, str) else set(value)


def parameter(template: dict[str, Any], name: str, parameters: dict[str, str]) -> str:
    return parameters.get(name, str(template["Parameters"][name].get("Default", "")))


def condition(template: dict[str, Any], name: str, parameters: dict[str, str]) -> bool:
    """Whether the template's condition ``name`` holds for these parameter values."""

    def value(node: Any) -> Any:
        if isinstance(node, dict) and "Ref" in node:
            return parameter(template, node["Ref"], parameters)
        if isinstance(node, dict) and "Fn::Select" in node:
            index, items = node["Fn::Select"]
            return value(items)[int(index)]
        if isinstance(node, dict) and "Fn::Split" in node:
            separator, text = node["Fn::Split"]
            return str(value(text)).split(separator)
        return node

    def holds(node: Any) -> bool:
        if "Condition" in node:
            return condition(template, node["Condition"], parameters)
        if "Fn::Equals" in node:
            left, right = node["Fn::Equals"]
            return bool(value(left) == value(right))
        if "Fn::Not" in node:
            return not holds(node["Fn::Not"][0])
        if "Fn::Or" in node:
            return any(holds(item) for item in node["Fn::Or"])
        if "Fn::And" in node:
            return all(holds(item) for item in node["Fn::And"])
        raise AssertionError(f"cannot evaluate {node!r}")

    return holds(template["Conditions"][name])


def resolve(value: Any, template: dict[str, Any], parameters: dict[str, str] | None = None) -> str:
    """A template value as deployed as STACK in REGION, parameters at their defaults
    unless ``parameters`` says otherwise."""
    given = parameters or {}
    if isinstance(value, str):
        return value
    if "Fn::If" in value:
        name, chosen, otherwise = value["Fn::If"]
        return resolve(chosen if condition(template, name, given) else otherwise, template, given)
    if "Fn::Select" in value:
        index, items = value["Fn::Select"]
        separator, text = items["Fn::Split"]
        return resolve(text, template, given).split(separator)[int(index)]
    if "Fn::Sub" in value:
        names = {
            "AWS::Region": REGION,
            "AWS::StackName": STACK,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "Table": "ucf-prod-Table-1AB2C3",
        }
        text = value["Fn::Sub"]
        if isinstance(text, list):
            text, variables = text
            names |= {k: resolve(v, template, given) for k, v in variables.items()}
        names |= {k: resolve({"Ref": k}, template, given) for k in template["Parameters"]}
        return re.sub(r"\$\{([^}]+)\}", lambda m: names[m.group(1)], text)
    if "Ref" in value:
        if value["Ref"] in template["Parameters"]:
            return parameter(template, value["Ref"], given)
        if value["Ref"] == "SignalQueue":  # a queue's Ref is its URL
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/ucf-prod-SignalQueue-XYZ"
        return f"arn:aws:{value['Ref']}"
    if "Fn::GetAtt" in value:
        return "arn:aws:{}.{}".format(*value["Fn::GetAtt"])
    raise AssertionError(f"cannot resolve {value!r}")


def operations_in(source: Path, service: str) -> set[str]:
    """Every operation of ``service`` that the source mentions by its boto3 method name,
    quoted (the store's ``call("put_item", …)``) or called (``client.put_events(…)``)."""
    model = botocore.session.Session().get_service_model(service)
    names = {xform_name(op): op for op in model.operation_names}
    files = [source] if source.is_file() else sorted(source.rglob("*.py"))
    text = "\n".join(path.read_text() for path in files)
    words = re.findall(r'"([a-z_]+)"', text)
    if source.is_file():
        words += re.findall(r"\.([a-z_]+)\(", text) + re.findall(r"self\._client\.([a-z_]+)", text)
    return {names[word] for word in words if word in names}


# --------------------------------------------------------------------------- the table


def test_table_is_the_single_table_the_dynamodb_store_checks_for(template: dict[str, Any]) -> None:
    table = properties(template, "Table")

    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [
        {"AttributeName": "PK", "KeyType": "HASH"},
        {"AttributeName": "SK", "KeyType": "RANGE"},
    ]
    [index] = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == GSI2
    assert index["KeySchema"] == [
        {"AttributeName": "GSI2PK", "KeyType": "HASH"},
        {"AttributeName": "GSI2SK", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "ALL"}
    assert {d["AttributeName"]: d["AttributeType"] for d in table["AttributeDefinitions"]} == {
        "PK": "S",
        "SK": "S",
        "GSI2PK": "S",
        "GSI2SK": "S",
    }
    assert table["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert resource(template, "Table")["DeletionPolicy"] == "Retain"


def test_every_function_reaches_the_table_through_exactly_the_operations_the_store_uses(
    template: dict[str, Any],
) -> None:
    used = operations_in(ROOT / "src/ucf/stores/dynamodb", "dynamodb")
    provisioned_here = {"CreateTable", "UpdateTimeToLive"}  # the template owns table and TTL
    [statement] = properties(template, "TableAccess")["PolicyDocument"]["Statement"]

    assert actions(statement) == {f"dynamodb:{op}" for op in used - provisioned_here}
    assert statement["Resource"] == [
        {"Fn::GetAtt": ["Table", "Arn"]},
        {"Fn::Sub": "${Table.Arn}/index/*"},
    ]
    for function in FUNCTIONS:
        assert {"Ref": "TableAccess"} in properties(template, function)["Policies"], function


# --------------------------------------------------------------------------- secrets


def test_connector_secrets_are_granted_only_under_the_secret_stores_own_prefix(
    template: dict[str, Any],
) -> None:
    environment = template["Globals"]["Function"]["Environment"]["Variables"]
    store_url = resolve(environment["UCF_SECRET_STORE"], template)
    prefix = re.search(r"[?&]prefix=([^&]+)", store_url)
    assert prefix is not None
    assert prefix.group(1) == f"ucf/{STACK}/"
    expected_arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ucf/{STACK}/*"
    used = operations_in(ROOT / "src/ucf/stores/secrets", "secretsmanager")
    # CreateSecret is called with Tags, which AWS authorises as TagResource too.
    crud = {f"secretsmanager:{op}" for op in used} | {"secretsmanager:TagResource"}

    granted: dict[str, set[str]] = {}
    for function in FUNCTIONS:
        for statement in statements(template, function):
            if any(a.startswith("secretsmanager:") for a in actions(statement)):
                if statement["Resource"] == {"Ref": "ApiTokenSecret"}:
                    assert function == "ApiFunction"
                    assert actions(statement) == {"secretsmanager:GetSecretValue"}
                    continue
                assert resolve(statement["Resource"], template) == expected_arn, function
                granted[function] = granted.get(function, set()) | actions(statement)

    assert granted == {
        "ApiFunction": crud,
        "PollWorkerFunction": {"secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"},
        # Upkeep (Outlook's subscription) reads an instance's secrets and keeps new values,
        # deletes the short-lived secrets of OAuth flows nobody completed, and rewrites an
        # instance's secret without a retired webhook secret, its replaced version
        # deprecated (Describe, then UpdateSecretVersionStage: rotate(keep_previous=False)).
        "ScheduleFunction": {
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue",
            "secretsmanager:DeleteSecret",
            "secretsmanager:DescribeSecret",
            "secretsmanager:UpdateSecretVersionStage",
        },
    }


def test_no_inline_statement_grants_a_wildcard_action_or_resource(
    template: dict[str, Any],
) -> None:
    for function in FUNCTIONS:
        for statement in statements(template, function):
            assert statement["Effect"] == "Allow"
            assert not any("*" in action for action in actions(statement)), function
            resources = statement["Resource"]
            for item in resources if isinstance(resources, list) else [resources]:
                text = resolve(item, template)
                assert text != "*", (function, text)
                assert not text.endswith(":*"), (function, text)


# --------------------------------------------------------------------------- functions


def test_every_handler_is_importable_and_built_for_the_runtime_the_makefile_targets(
    template: dict[str, Any],
) -> None:
    globals_ = template["Globals"]["Function"]
    makefile = MAKEFILE.read_text()
    version = re.search(r"^PYTHON_VERSION \?= (\S+)$", makefile, re.MULTILINE)
    platform = re.search(r"^PLATFORM \?= (\S+)$", makefile, re.MULTILINE)
    assert version is not None
    assert platform is not None
    assert globals_["Runtime"] == f"python{version.group(1)}"
    assert globals_["Architectures"] == [
        {"aarch64": "arm64", "x86_64": "x86_64"}[platform.group(1).split("-")[0]]
    ]
    assert globals_["CodeUri"] == ".build/app"
    for function in FUNCTIONS:
        module, _, attribute = properties(template, function)["Handler"].rpartition(".")
        assert callable(getattr(importlib.import_module(module), attribute)), function


READ_BY_LIBRARIES: Final = frozenset({"PYDANTIC_DISABLE_PLUGINS"})
"""Variables the template sets for a library ucf uses, not for ucf itself."""


def test_the_environment_the_template_sets_is_accepted_by_a_lambda(
    template: dict[str, Any],
) -> None:
    environment = {
        name: resolve(value, template)
        for name, value in template["Globals"]["Function"]["Environment"]["Variables"].items()
    }
    code = "\n".join(p.read_text() for p in (ROOT / "src/ucf").rglob("*.py"))
    every_variable = set(environment)
    for function in FUNCTIONS:
        every_variable |= set(
            properties(template, function).get("Environment", {}).get("Variables", {})
        )

    settings = lambda_settings({**environment, "UCF_SINK_HTTP": "https://pipeline.example/s"})

    assert parse_dynamodb_url(settings.store_url).table == "ucf-prod-Table-1AB2C3"
    assert parse_dynamodb_url(settings.store_url).region == REGION
    assert settings.sinks == ("http",)
    for name in every_variable - READ_BY_LIBRARIES:
        assert f'"{name}"' in code, f"{name} is set by the template but read nowhere in ucf"
    assert every_variable >= READ_BY_LIBRARIES


@pytest.mark.parametrize(
    ("given", "retention", "history"),
    [({}, timedelta(days=30), 50),
     ({"WebhookSecretRetentionDays": "7", "DescriptorHistory": "5"}, timedelta(days=7), 5)],
)  # fmt: skip
def test_the_webhook_secret_retention_and_the_descriptor_history_are_parameters(
    template: dict[str, Any], given: dict[str, str], retention: timedelta, history: int
) -> None:
    """Both settings had no parameter: a deployment kept the defaults, or edited the
    template."""
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["UCF_WEBHOOK_SECRET_RETENTION_DAYS"] == {"Ref": "WebhookSecretRetentionDays"}
    assert variables["UCF_DESCRIPTOR_HISTORY"] == {"Ref": "DescriptorHistory"}

    settings = lambda_settings(
        {name: resolve(value, template, given) for name, value in variables.items()}
    )

    assert settings.webhook_secret_retention == retention
    assert settings.descriptor_history == history


@pytest.mark.parametrize("value", ["1", "50", "999999999"])
def test_every_descriptor_history_the_template_admits_starts_a_function(
    template: dict[str, Any], value: str
) -> None:
    """A Number parameter admitted 1.5, and every function then failed at its cold start
    ("must be a whole number"): the parameter admits whole numbers alone."""
    pattern = template["Parameters"]["DescriptorHistory"]["AllowedPattern"]
    for refused in ("1.5", "0", "-1", "", "1e3", " 5"):
        assert re.fullmatch(pattern, refused) is None, refused
    assert re.fullmatch(pattern, value)
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    settings = lambda_settings(
        {name: resolve(v, template, {"DescriptorHistory": value}) for name, v in variables.items()}
    )
    assert settings.descriptor_history == int(value)


def test_polls_fan_out_over_a_fifo_queue_with_partial_batch_responses(
    template: dict[str, Any],
) -> None:
    queue = properties(template, "PollQueue")
    dead_letters = properties(template, "PollDeadLetterQueue")
    worker = properties(template, "PollWorkerFunction")
    schedule = properties(template, "ScheduleFunction")
    [event] = worker["Events"].values()

    assert queue["FifoQueue"] is True
    assert dead_letters["FifoQueue"] is True
    assert queue["ContentBasedDeduplication"] is False  # ucf sets deduplication ids itself
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["PollDeadLetterQueue", "Arn"]
    }
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]
    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["PollQueue", "Arn"]}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert schedule["Environment"]["Variables"]["UCF_POLL_QUEUE_URL"] == {"Ref": "PollQueue"}
    [send] = [
        s for s in statements(template, "ScheduleFunction") if "sqs:SendMessage" in actions(s)
    ]
    assert send["Resource"] == {"Fn::GetAtt": ["PollQueue", "Arn"]}
    assert [e["Type"] for e in schedule["Events"].values()] == ["Schedule"]


def test_the_api_takes_every_path_and_answers_within_api_gateways_limit(
    template: dict[str, Any],
) -> None:
    api = properties(template, "ApiFunction")
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in api["Events"].values()}

    assert {e["Type"] for e in api["Events"].values()} == {"HttpApi"}
    assert routes == {("ANY", "/"), ("ANY", "/{proxy+}")}
    assert api["Timeout"] <= 30  # HTTP API integrations time out at 30 s
    assert api["Environment"]["Variables"]["UCF_API_TOKEN_SECRET"] == {"Ref": "ApiTokenSecret"}


def test_a_try_in_the_editor_stops_well_before_the_api_function_is_stopped(
    template: dict[str, Any],
) -> None:
    """Try it stopped at 30 s, the API function's own timeout (and API Gateway's most):
    the function was stopped first, with the store reads and the answer's rendering
    still to do, and the editor showed a 503 instead of the try's 'stopped at its
    deadline' with the pages it got."""
    api = properties(template, "ApiFunction")
    assert min(api["Timeout"], 30) - 5 >= TRY_DEADLINE_SECONDS


def test_delivery_exists_only_with_a_sink(template: dict[str, Any]) -> None:
    assert resource(template, "DeliveryFunction")["Condition"] == "HasSink"
    assert resource(template, "DeliveryLogs")["Condition"] == "HasSink"
    assert not condition(template, "HasSink", {})
    for name, value in (
        ("SinkUrl", "https://pipeline.example/signals"),
        ("SinkQueue", "create"),
        ("SinkEventBus", "default"),
    ):
        assert condition(template, "HasSink", {name: value}), name
    assert template["Globals"]["Function"]["Environment"]["Variables"]["UCF_SINK_HTTP"] == {
        "Ref": "SinkUrl"
    }


SQS_IAM = {"SendMessageBatch": "sqs:SendMessage", "GetQueueAttributes": "sqs:GetQueueAttributes"}
"""SendMessageBatch is authorised as sqs:SendMessage (SQS has no action of its own for it)."""

QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:pipeline-signals.fifo"


@pytest.mark.parametrize(
    ("choice", "url", "arn"),
    [
        (
            "create",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/ucf-prod-SignalQueue-XYZ",
            "arn:aws:SignalQueue.Arn",
        ),
        (
            "create-fifo",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/ucf-prod-SignalQueue-XYZ",
            "arn:aws:SignalQueue.Arn",
        ),
        (
            QUEUE_ARN,
            f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/pipeline-signals.fifo",
            QUEUE_ARN,
        ),
    ],
)
def test_an_sqs_sink_is_created_or_referenced_and_granted_exactly_what_the_sink_calls(
    template: dict[str, Any], choice: str, url: str, arn: str
) -> None:
    parameters = {"SinkQueue": choice}
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    environment = {name: resolve(value, template, parameters) for name, value in variables.items()}
    used = operations_in(ROOT / "src/ucf/service/aws_sinks.py", "sqs")
    [granted] = [
        s
        for s in statements(template, "DeliveryFunction", parameters)
        if s.get("Sid") == "SinkQueue"
    ]

    settings = lambda_settings(environment)

    assert settings.sinks == ("sqs",)
    assert settings.sqs_sink == url
    assert actions(granted) == {SQS_IAM[op] for op in used}
    assert resolve(granted["Resource"], template, parameters) == arn
    assert condition(template, "CreateQueue", parameters) == choice.startswith("create")


def test_a_created_fifo_queue_leaves_deduplication_to_ucf(template: dict[str, Any]) -> None:
    queue = properties(template, "SignalQueue")
    assert resource(template, "SignalQueue")["Condition"] == "CreateQueue"
    assert queue["FifoQueue"] == {"Fn::If": ["CreateFifoQueue", True, {"Ref": "AWS::NoValue"}]}
    assert queue["ContentBasedDeduplication"] == {
        "Fn::If": ["CreateFifoQueue", False, {"Ref": "AWS::NoValue"}]
    }
    assert condition(template, "CreateFifoQueue", {"SinkQueue": "create-fifo"})
    assert not condition(template, "CreateFifoQueue", {"SinkQueue": "create"})


@pytest.mark.parametrize(
    ("choice", "bus", "arn"),
    [
        ("create", "arn:aws:SignalBus", "arn:aws:SignalBus.Arn"),
        ("default", "default", f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"),
        (
            "arn:aws:events:us-east-1:210987654321:event-bus/central",
            "arn:aws:events:us-east-1:210987654321:event-bus/central",
            "arn:aws:events:us-east-1:210987654321:event-bus/central",
        ),
    ],
)
def test_an_event_bus_sink_is_created_or_referenced_and_granted_put_events_on_it_alone(
    template: dict[str, Any], choice: str, bus: str, arn: str
) -> None:
    parameters = {"SinkEventBus": choice}
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    environment = {name: resolve(value, template, parameters) for name, value in variables.items()}
    used = operations_in(ROOT / "src/ucf/service/aws_sinks.py", "events")
    [granted] = [
        s
        for s in statements(template, "DeliveryFunction", parameters)
        if s.get("Sid") == "SinkEventBus"
    ]

    assert environment["UCF_SINK_EVENTBRIDGE"] == bus
    if choice != "create":  # a created bus's Ref is its name, known only once deployed
        assert lambda_settings(environment).sinks == ("eventbridge",)
    assert actions(granted) == {f"events:{op}" for op in used} == {"events:PutEvents"}
    assert resolve(granted["Resource"], template, parameters) == arn


def test_new_outbox_entries_start_the_delivery_function_and_the_tick_stays(
    template: dict[str, Any],
) -> None:
    table = properties(template, "Table")
    delivery = properties(template, "DeliveryFunction")
    stream = delivery["Events"]["NewOutboxEntries"]
    [tick] = [e for e in delivery["Events"].values() if e["Type"] == "Schedule"]
    [entry] = stream["Properties"]["FilterCriteria"]["Filters"]
    pattern = json.loads(entry["Pattern"])
    prefix = pattern["dynamodb"]["Keys"]["PK"]["S"][0]["prefix"]

    assert table["StreamSpecification"] == {
        "Fn::If": ["HasSink", {"StreamViewType": "KEYS_ONLY"}, {"Ref": "AWS::NoValue"}]
    }
    assert stream["Type"] == "DynamoDB"
    assert stream["Properties"]["Stream"] == {"Fn::GetAtt": ["Table", "StreamArn"]}
    assert pattern["eventName"] == ["INSERT"]
    for sink in ("http", "sqs", "eventbridge"):  # every outbox, and nothing else
        assert keys.outbox_pk(sink).startswith(prefix)
    assert not keys.parked_pk("http").startswith(prefix)
    assert stream["Properties"]["MaximumRetryAttempts"] == 0  # a wake-up is never retried
    assert tick["Properties"]["Schedule"] == "rate(1 minute)"


def test_cfn_lint_finds_nothing_to_report() -> None:
    from cfnlint.api import lint_file  # type: ignore[import-untyped]

    matches = lint_file(TEMPLATE)

    assert [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches] == []
