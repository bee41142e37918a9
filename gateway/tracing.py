"""The process's OpenTelemetry tracer, built once by `create_app` (docs/operating.md, "Tracing").

Tracing is on when `UCGW_TRACING=true` or an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), and off when `OTEL_SDK_DISABLED=true`. The standard variables are the
SDK's own: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` / `_ARG` (checked here
so a typo stops the start instead of silently sampling everything), `OTEL_EXPORTER_OTLP_*` for the
OTLP/HTTP exporter, `OTEL_BSP_*` for the batch processor, and `OTEL_TRACES_EXPORTER` (`otlp`, the default,
`console` or `none`). Off, no SDK object exists and every instrumented place holds `tracer = None`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config import ConfigError
from sources.settings import Settings
from sources.tracing import Tracer

log = logging.getLogger("ucgw.tracing")

SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off",
            "parentbased_traceidratio")
EXPORTERS = ("otlp", "console", "none")
TRUE = {"1", "true", "yes", "on"}


@dataclass
class Tracing:
    """The tracer the instrumented parts get (None: tracing is off) and the provider to flush at the end."""

    tracer: Tracer | None = None
    provider: Any = None
    description: str = "off"

    def shutdown(self) -> None:
        """Export what is still buffered and stop the exporter (the lifespan's end)."""
        if self.provider is not None:
            self.provider.shutdown()


def tracing_wanted(settings: Settings, environ: Mapping[str, str]) -> bool:
    """Whether this process traces at all."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in TRUE:
        return False
    return settings.tracing or bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                                    or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _sampler(environ: Mapping[str, str]) -> Any:
    from opentelemetry.sdk.trace import sampling

    name = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if name not in SAMPLERS:
        raise ConfigError(f"OTEL_TRACES_SAMPLER={name!r} is not one of {', '.join(SAMPLERS)}")
    if not name.endswith("traceidratio"):
        return sampling._KNOWN_SAMPLERS[name]  # the SDK's own instances (always_on etc.)
    raw = environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG={raw!r} must be a number from 0 to 1 (the share of traces kept)")
    return sampling.ParentBased(sampling.TraceIdRatioBased(ratio)) if name.startswith("parentbased") \
        else sampling.TraceIdRatioBased(ratio)


def build_tracing(settings: Settings, environ: Mapping[str, str] | None = None) -> Tracing:
    """The process's tracing: off (no SDK object at all), or a TracerProvider with a batch exporter."""
    environ = os.environ if environ is None else environ
    if not tracing_wanted(settings, environ):
        return Tracing()
    exporter_name = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if exporter_name not in EXPORTERS:
        raise ConfigError(f"OTEL_TRACES_EXPORTER={exporter_name!r} is not one of {', '.join(EXPORTERS)}")
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf")
    if exporter_name == "otlp" and protocol != "http/protobuf":
        raise ConfigError(f"OTLP protocol {protocol!r} is not supported: the gateway exports http/protobuf "
                          "(point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port, usually 4318)")
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    sampler = _sampler(environ)
    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or "uc-status-gateway"})
    provider = TracerProvider(sampler=sampler, resource=resource, shutdown_on_exit=False)
    where = "spans are not exported"
    if exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
        where = f"OTLP/HTTP to {getattr(exporter, '_endpoint', '?')}"
    elif exporter_name == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        where = "spans printed to stdout"
    description = f"on ({sampler.get_description()}; {where})"
    log.info("tracing %s", description)
    return Tracing(provider.get_tracer("uc-status-gateway"), provider, description)
