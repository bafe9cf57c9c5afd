"""OpenTelemetry tracing for every fleet process, configured by the standard OTEL_* variables.

Tracing is on when an exporter is configured: `OTEL_TRACES_EXPORTER` names one (`otlp`,
`console`, comma-separated), or `OTEL_EXPORTER_OTLP_ENDPOINT` / `..._TRACES_ENDPOINT` is set (then
OTLP over HTTP/protobuf). Otherwise — and with `OTEL_SDK_DISABLED=true` or
`OTEL_TRACES_EXPORTER=none` — no tracer provider is installed, the HTTP shell adds no tracing
middleware, and every helper here returns after one check of the current span (`is_recording()`
on OpenTelemetry's invalid span), so the hot path pays nothing it could measure. Sampling,
batching and the resource follow the SDK's own variables (`OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`,
`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`).

The trace context travels as W3C `traceparent` only (TraceContextTextMapPropagator, a stateless
constant): HTTP headers between processes, the `headers` of a shard's outbox row (written in the
same INSERT as before), the NATS message headers, and the `meta` of a command handed over in an
outcome answer. See docs/architecture.md, "Tracing".

The global tracer provider is OpenTelemetry's own process-wide state: set once, from
`service.run_service`, before the app is built.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator, Mapping, MutableMapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .config import ConfigError

TRACEPARENT = "traceparent"
PROPAGATOR = TraceContextTextMapPropagator()
_OFF = contextlib.nullcontext()  # stateless, so one shared instance serves every disabled call

__all__ = ["SpanKind", "StatusCode", "TRACEPARENT", "configure_tracing", "enabled", "tracer", "child_span",
           "current_traceparent", "inject", "context_from", "log_ids"]


def exporters_from_env(env: Mapping[str, str]) -> list[str]:
    """The span exporters asked for. Unlike the SDK's default (OTLP to localhost), nothing is
    exported unless asked for: a fleet without a collector must not spend anything on spans."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = env.get("OTEL_TRACES_EXPORTER")
    if names is None:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        names = "otlp" if endpoint else "none"
    return [n.strip().lower() for n in names.split(",") if n.strip() and n.strip().lower() != "none"]


def configure_tracing(service: str, env: Mapping[str, str], *, shard: str = "") -> bool:
    """Install the global tracer provider when an exporter is configured; True if tracing is on.
    An unknown exporter name is a ConfigError (start-up stops with it, naming the variable)."""
    exporters = exporters_from_env(env)
    if not exporters:
        return False
    # Imported only when on: the SDK is not needed (or loaded) by a process that does not trace.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    attributes: dict[str, Any] = {"service.name": f"noetl-{service}", "service.namespace": "noetl"}
    if shard:
        attributes["noetl.shard"] = shard
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over these.
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in exporters:
        if name == "console":
            # One JSON object per line on stderr, beside the JSON log lines (the SDK's default
            # pretty-prints over many lines to stdout, which no log pipeline can split).
            exporter: Any = ConsoleSpanExporter(out=sys.stderr, formatter=lambda s: s.to_json(indent=None) + "\n")
        elif name == "otlp":
            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            if protocol not in (None, "", "http/protobuf"):
                raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: only http/protobuf is supported")
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            exporter = OTLPSpanExporter()  # endpoint, headers, timeout from OTEL_EXPORTER_OTLP_*
        else:
            raise ConfigError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (use otlp, console or none)")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def enabled() -> bool:
    """Whether a real tracer provider is installed (decided once per process at start)."""
    return not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def tracer(name: str = "noetl") -> trace.Tracer:
    return trace.get_tracer(name)


def child_span(name: str, attributes: Mapping[str, Any] | None = None) -> Any:
    """A child of the current span, as a context manager yielding it; when nothing is being
    traced (tracing off, or this request not sampled) a shared no-op that yields None."""
    if not trace.get_current_span().is_recording():
        return _OFF
    return trace.get_tracer("noetl").start_as_current_span(name, attributes=attributes)


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, or None when nothing is being traced."""
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT)


def inject(headers: MutableMapping[str, str]) -> None:
    """Set (or replace) `traceparent` in outgoing headers from the current span, if any."""
    if trace.get_current_span().is_recording():
        PROPAGATOR.inject(headers)


def context_from(traceparent: str | None) -> otel_context.Context | None:
    """The context a W3C traceparent names (None for none or a malformed one)."""
    if not traceparent:
        return None
    ctx = PROPAGATOR.extract({TRACEPARENT: traceparent})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


@contextlib.contextmanager
def producer_span(tracer: trace.Tracer, subject: str, msg_id: str, headers: Mapping[str, str],
                  attributes: Mapping[str, Any]) -> Iterator[dict[str, str]]:
    """A PRODUCER span for publishing one message, a child of the span the message's traceparent
    names; yields the headers to send (`Nats-Msg-Id`, and a traceparent naming this span, so the
    consumer's span follows the publish)."""
    parent = context_from(headers.get(TRACEPARENT))
    with tracer.start_as_current_span(f"publish {subject.rsplit('.', 1)[0]}", context=parent,
                                      kind=SpanKind.PRODUCER) as span:
        span.set_attribute("messaging.system", "nats")
        span.set_attribute("messaging.destination.name", subject)
        span.set_attribute("messaging.message.id", msg_id)
        for key, value in attributes.items():
            span.set_attribute(key, value)
        out = {**headers, "Nats-Msg-Id": msg_id}
        inject(out)
        yield out


def log_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the current span, for log lines; None outside any span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
