"""The plain view of a stored descriptor against the models that validated it.

A webhook delivery (and a poll) reads its descriptor through
:mod:`ucf.core.descriptor_view`, loaded straight from the stored JSON without
pydantic. These hold it equal to what the models read: for every shipped
descriptor and for hypothesis-drawn valid ones (every optional field given or
left out, every union member), the view loaded from the JSON equals the view
read off the validated model, and every attribute of it equals the model's
attribute of the same name, recursively (an alias misspelt in the loader, or a
default applied differently, fails here).
"""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from annotated_types import Ge, Le, MaxLen, MinLen
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from ucf.catalogue import builtin_descriptors
from ucf.core import descriptor as d
from ucf.core.descriptor_view import (
    ConnectorView,
    ViewUnavailable,
    _View,
    connector_view,
    load_connector_view,
    mapping_view,
    webhook_view,
)
from ucf.service.connectors import Connector

# --------------------------------------------------------------------------- comparison

# Attributes a view has beyond the model's, checked on their own below.
_OWN = {"_signature", "rate_limit_set"}


def assert_reads_as(view: Any, model: Any, where: str = "$") -> None:
    """Every attribute of ``view`` equals ``model``'s of the same name, recursively."""
    if isinstance(view, _View):
        assert model is not None, f"{where}: the view has a value, the model None"
        for name in view._fields:
            if name in _OWN:
                continue
            # NoAuth has no config; its view's is None (any other missing name fails below)
            read = getattr(model, name) if name != "config" else getattr(model, name, None)
            assert_reads_as(getattr(view, name), read, f"{where}.{name}")
    elif isinstance(view, list):
        assert isinstance(model, list), where
        assert len(view) == len(model), where
        for index, (a, b) in enumerate(zip(view, model, strict=True)):
            assert_reads_as(a, b, f"{where}[{index}]")
    else:
        assert not isinstance(model, BaseModel), f"{where}: a model read as {view!r}"
        assert view == model, f"{where}: view {view!r}, model {model!r}"


def assert_view_of(stored: Mapping[str, Any]) -> None:
    model = d.ConnectorDescriptor.model_validate(stored)
    view = load_connector_view(stored)

    assert view == connector_view(model)
    assert_reads_as(view, model)
    assert_reads_as(view.webhook, model.webhook, "$.webhook")
    assert_reads_as(view.webhook_mapping(), model.webhook_mapping(), "$.webhookMapping")
    assert_reads_as(view.signature_verification(), model.signature_verification(), "$.sig")
    assert_reads_as(view.consent(), model.consent(), "$.consent")
    if model.webhook is not None:
        assert view.webhook is not None
        assert view.webhook.rate_limit_set == (
            "rate_limit_per_minute" in model.webhook.model_fields_set
        )
        assert webhook_view(model) == view.webhook == webhook_view(model.webhook)
    for method in model.auth_methods():
        credentials = {d.AUTH_METHOD_KEY: method.method}
        assert_reads_as(view.auth_for(credentials), model.auth_for(credentials), "$.auth_for")
    assert_reads_as(view.auth_for({}), model.auth_for({}), "$.auth_for")
    if model.field_mapping is not None:
        assert mapping_view(model.field_mapping) == view.field_mapping


@pytest.mark.parametrize("stored", builtin_descriptors(), ids=lambda data: str(data["id"]))
def test_every_catalogue_descriptor_reads_the_same_through_its_view(
    stored: dict[str, Any],
) -> None:
    assert_view_of(stored)  # as shipped
    assert_view_of(d.ConnectorDescriptor.model_validate(stored).to_json())  # as stored


# --------------------------------------------------------------------------- drawn descriptors

WORDS = ("alpha", "beta2", "gamma")
"""Valid as ids, field keys and anything else a bare string field holds."""


def _constraints(metadata: list[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, Ge):
            found["min_value"] = item.ge
        elif isinstance(item, Le):
            found["max_value"] = item.le
        elif isinstance(item, MaxLen | MinLen):
            continue
        elif getattr(item, "pattern", None):
            found["pattern"] = item.pattern
    return found


def _strings(constraints: Mapping[str, Any]) -> st.SearchStrategy[str]:
    if str(constraints.get("pattern", "")).startswith("^https"):
        return st.just("https://docs.example/page")
    return st.sampled_from(WORDS)


def _for(
    annotation: Any, constraints: Mapping[str, Any], names: bool = False
) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _for(args[0], constraints, names)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([_for(arg, constraints, names) for arg in args])
    if origin is list:
        return st.lists(_for(args[0], {}, names), max_size=2)
    if origin is dict:
        return st.dictionaries(st.sampled_from(WORDS), _for(args[1], {}), max_size=2)
    if annotation is type(None):
        return st.none()
    if annotation is str:
        return _strings(constraints)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(constraints.get("min_value", 0), constraints.get("max_value", 10_000))
    if annotation is typing.Any:
        return st.sampled_from(WORDS)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return model_json(annotation, names=names)
    raise AssertionError(f"no strategy for {annotation!r}")


_ONE_OF: dict[type[BaseModel], tuple[str, ...]] = {
    d.SignatureTimestamp: ("header", "bodyPath"),
    d.TokenVerification: ("header", "queryParam", "bodyPath"),
}


@st.composite
def _model_json(draw: st.DrawFn, model: type[BaseModel], names: bool) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        if names and key != name and draw(st.booleans()):
            key = name  # the models take a field by its name too (validate_by_name)
        if not field.is_required():
            wanted = name in {"ingestion", "field_mapping"} or draw(st.booleans())
            if not wanted:
                continue
        data[key] = draw(_for(field.annotation, _constraints(field.metadata), names))
    sources = _ONE_OF.get(model)
    if sources is not None:
        by_name = {field.alias: name for name, field in model.model_fields.items()}
        for source in sources:
            data.pop(source, None)
            data.pop(by_name.get(source, source), None)
        data[draw(st.sampled_from(sources))] = "alpha"
    return data


def model_json(model: type[BaseModel], *, names: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """Valid-shaped JSON of ``model``: camelCase aliases, or with ``names`` each key the alias
    or the field's Python name (as a shipped or native descriptor may be stored)."""
    return st.deferred(lambda: _model_json(model, names))


def _valid(data: dict[str, Any]) -> bool:
    try:
        d.ConnectorDescriptor.model_validate(data)
    except ValidationError:
        return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_json(d.ConnectorDescriptor))
def test_drawn_descriptors_read_the_same_through_their_view(data: dict[str, Any]) -> None:
    assume(_valid(data))
    assert_view_of(data)
    assert_view_of(d.ConnectorDescriptor.model_validate(data).to_json())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_json(d.ConnectorDescriptor, names=True))
def test_drawn_descriptors_with_keys_by_name_read_the_same_through_the_connector(
    data: dict[str, Any],
) -> None:
    """Keys by field name: the connector's view (the loader's, or the models' when the
    loader refuses the JSON) reads every field as the models do."""
    assume(_valid(data))
    model = d.ConnectorDescriptor.model_validate(data)
    view = Connector(data, built_in=True, created_at=_NOW, updated_at=_NOW).view
    assert view == connector_view(model)
    assert_reads_as(view, model)


def _views() -> list[type[_View]]:
    found: list[type[_View]] = []
    pending: list[type[_View]] = [_View]
    while pending:
        kind = pending.pop()
        found.append(kind)
        pending += kind.__subclasses__()
    return found


_MODELS: dict[str, tuple[type[BaseModel], ...]] = {
    "ConditionView": (d.Condition,),
    "SignalTypeRuleView": (d.SignalTypeRule,),
    "PriorityRuleView": (d.PriorityRule,),
    "FieldMappingView": (d.FieldMappingDescriptor,),
    "SignatureTimestampView": (d.SignatureTimestamp,),
    "SignatureView": (d.SignatureVerification,),
    "TokenView": (d.TokenVerification,),
    "HandshakeView": (d.Handshake,),
    "WebhookView": (d.WebhookSpec,),
    "CredentialFieldView": (d.CredentialField,),
    "CredentialPlacementView": (d.CredentialPlacement,),
    "AuthConfigView": (d._AuthConfigBase,),
    "KeyedConfigView": (d.ApiKeyConfig, d.PatConfig),
    "BasicConfigView": (d.BasicAuthConfig,),
    "OAuth2ConfigView": (d.OAuth2Config,),
    "WebhookSecretConfigView": (d.WebhookSecretConfig,),
    "AuthView": (d.OAuth2Auth, d.ApiKeyAuth, d.PatAuth, d.BasicAuth, d.WebhookSecretAuth),
    "ConfigFieldView": (d.ConfigField,),
    "TimestampFilterView": (d.TimestampFilterDelta,),
    "DeltaTokenView": (d.DeltaTokenDelta,),
    "CursorView": (d.CursorDelta,),
    "SinceIdView": (d.SinceIdDelta,),
    "PaginationView": (d.PaginationDescriptor,),
    "PollingView": (d.PollingSpec,),
    "HealthCheckView": (d.HealthCheckDescriptor,),
    "ResponseErrorsView": (d.ResponseErrors,),
    "ConnectorView": (d.ConnectorDescriptor,),
}


@pytest.mark.parametrize("view", [v for v in _views() if v is not _View], ids=lambda v: v.__name__)
def test_every_view_takes_exactly_its_models_keys(view: type[_View]) -> None:
    """A key the view refuses makes the connector parse with the models (slow, logged); a key
    it takes but does not read would be a field silently left at its default."""
    for model in _MODELS[view.__name__]:
        assert view._keys == {field.alias or name for name, field in model.model_fields.items()}


# --------------------------------------------------------------------------- the fallback


def _github() -> dict[str, Any]:
    return next(data for data in builtin_descriptors() if data["id"] == "github-issues")


def test_a_stored_descriptor_is_read_without_the_models() -> None:
    connector = Connector(_github(), built_in=True, created_at=_NOW, updated_at=_NOW)

    assert isinstance(connector.view, ConnectorView)
    assert "descriptor" not in connector.__dict__  # never parsed with the models


def test_stored_json_the_loader_cannot_read_is_parsed_with_the_models(
    caplog: pytest.LogCaptureFixture,
) -> None:
    odd = {**_github(), "authAlternatives": "not a list"}
    with pytest.raises(ViewUnavailable):
        load_connector_view(odd)

    connector = Connector(odd, built_in=True, created_at=_NOW, updated_at=_NOW)
    with pytest.raises(ValidationError, match="authAlternatives"):  # the models' clear error
        _ = connector.view
    assert "connector github-issues: its stored descriptor is read with the models" in (caplog.text)

    readable = Connector(
        {**_github(), "ingestion": {**_github()["ingestion"], "mode": "carrier-pigeon"}},
        built_in=True,
        created_at=_NOW,
        updated_at=_NOW,
    )
    with pytest.raises(ValidationError, match="mode"):
        _ = readable.view


_NOW = datetime(2026, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- keys by name


def _linear_by_name() -> dict[str, Any]:
    """Linear's shipped descriptor with its replay window and secret credential given by
    field name, which the models accept as well as the camelCase alias (``validate_by_name``):
    a shipped or installed native descriptor is stored as written, not as the models dump it."""
    data = copy.deepcopy(next(x for x in builtin_descriptors() if x["id"] == "linear"))
    webhook = data["ingestion"]["webhook"] if "webhook" in data["ingestion"] else data["ingestion"]
    signature = webhook["signature"]
    signature["timestamp"]["tolerance_seconds"] = 5
    del signature["timestamp"]["toleranceSeconds"]
    signature["secret_credential"] = "signingSecret"
    webhook["rate_limit_per_minute"] = 7
    return data


def test_keys_given_by_field_name_read_as_the_models_read_them() -> None:
    stored = _linear_by_name()
    model = d.ConnectorDescriptor.model_validate(stored)
    assert model.signature_verification() is not None
    assert model.signature_verification().timestamp.tolerance_seconds == 5  # type: ignore[union-attr]

    connector = Connector(stored, built_in=True, created_at=_NOW, updated_at=_NOW)
    view = connector.view
    signature = view.signature_verification()
    assert signature is not None
    assert signature.timestamp is not None
    assert signature.timestamp.tolerance_seconds == 5  # not the default 300: a wider replay window
    assert signature.secret_credential == "signingSecret"
    assert view.webhook is not None
    assert view.webhook.rate_limit_per_minute == 7
    assert view.webhook.rate_limit_set
    assert view == connector_view(model)


def test_a_key_the_models_refuse_is_not_ignored_by_the_view() -> None:
    stored = {**_github(), "polling_interval": 5}
    with pytest.raises(ViewUnavailable, match="polling_interval"):
        load_connector_view(stored)
