"""OpenTelemetry integration: the manager's lookups, back-end calls and refreshes as metrics,
and a span per back-end call. Needs the ``otel`` extra (``opentelemetry-api``).

``instrument(manager)`` records, through the global (or given) meter and tracer providers:

- ``secrets.lookups`` (counter, attribute ``outcome``: ``hit``, ``miss``, ``stale``),
- ``secrets.provider.calls`` (counter, ``provider``, ``outcome``: ``ok``, ``error``,
  ``timeout``),
- ``secrets.refreshes`` (counter, ``provider``, ``outcome``: ``ok``, ``error``),
- ``secrets.provider.duration`` (histogram, seconds, ``provider``),
- a ``secrets.provider.call`` span around each back-end call.

Attributes hold provider names and outcomes, never a value. A cached lookup does no work for
this: the lookup counter is observed from the manager's own counters when metrics are
collected, and only back-end calls (the slow path) pass through the probe.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

from . import missing_extra

try:
    from opentelemetry import context, metrics, trace
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Status, StatusCode, TracerProvider
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise missing_extra("opentelemetry-api", "otel") from exc

from .._events import SecretsEvent
from ..manager import SecretsManager

__all__ = ["Instrumentation", "instrument"]

#: The instrumentation scope name of every meter and tracer used here.
SCOPE = "simpletuner_secrets"
#: Bucket bounds of the duration histogram, in seconds: a loopback answer to a stuck call.
BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]


class _Probe:
    """Times each back-end call into the calls counter, the histogram and a span."""

    def __init__(self, tracer: trace.Tracer, calls: Any, duration: Any) -> None:
        self.tracer = tracer
        self.calls = calls
        self.duration = duration

    def start(self, provider: str, key: str | None) -> Any:
        attributes = {"provider": provider}
        if key is not None:
            attributes["key"] = key
        span = self.tracer.start_span("secrets.provider.call", attributes=attributes)
        # Current while the call runs, so a client's own spans (HTTP) nest under it.
        return span, context.attach(trace.set_span_in_context(span))

    def end(self, token: Any, provider: str, outcome: str, seconds: float) -> None:
        span, attached = token
        context.detach(attached)
        span.set_attribute("outcome", outcome)
        if outcome in ("error", "timeout"):
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end()
        if outcome == "cancelled":
            return  # the caller went away: not a back-end outcome to count
        self.calls.add(1, {"provider": provider, "outcome": outcome})
        self.duration.record(seconds, {"provider": provider})


class Instrumentation:
    """What `instrument` set up on a manager; `uninstrument` removes it."""

    def __init__(self, manager: SecretsManager, probe: _Probe, refreshes: Any) -> None:
        self._manager = weakref.ref(manager)
        self._probe = probe
        self._refreshes = refreshes
        self._unsubscribe: Callable[[], None] | None = manager.resolver.events.subscribe(
            self._on_event
        )
        manager.resolver.events.probe = probe

    def _on_event(self, event: SecretsEvent) -> None:
        if event.kind == "refreshed":
            self._refreshes.add(1, {"provider": event.provider, "outcome": "ok"})
        elif event.kind == "refresh_failed":
            self._refreshes.add(1, {"provider": event.provider, "outcome": "error"})

    def observe_lookups(self, _options: CallbackOptions) -> Iterable[Observation]:
        """The lookup counter's values, read from the manager's counters at collection."""
        manager = self._manager()
        if manager is None or self._unsubscribe is None:
            return []
        counts = manager.stats()["lookups"]
        return [
            Observation(count, {"outcome": outcome})
            for outcome, count in (
                ("hit", counts["hit"]),
                ("miss", counts["miss"]),
                ("stale", counts["stale"]),
            )
        ]

    def uninstrument(self) -> None:
        """Stop recording (the instruments stay registered, reporting nothing new)."""
        manager = self._manager()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if manager is not None and manager.resolver.events.probe is self._probe:
            manager.resolver.events.probe = None


def instrument(
    manager: SecretsManager,
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Instrumentation:
    """Record ``manager``'s lookups, back-end calls and refreshes with OpenTelemetry.

    Args:
        manager: The manager to watch.
        meter_provider: Where the metrics go (default: the global meter provider).
        tracer_provider: Where the spans go (default: the global tracer provider).

    Returns:
        The `Instrumentation`; call its ``uninstrument()`` to stop.
    """
    from .. import __version__

    meters = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    tracers = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    meter = meters.get_meter(SCOPE, __version__)
    tracer = tracers.get_tracer(SCOPE, __version__)
    calls = meter.create_counter(
        "secrets.provider.calls", unit="1", description="Back-end calls by provider and outcome"
    )
    try:
        duration = meter.create_histogram(
            "secrets.provider.duration",
            unit="s",
            description="Back-end call duration",
            explicit_bucket_boundaries_advisory=BUCKETS_S,
        )
    except TypeError:  # opentelemetry-api before 1.23: the SDK's default buckets
        duration = meter.create_histogram(
            "secrets.provider.duration", unit="s", description="Back-end call duration"
        )
    refreshes = meter.create_counter(
        "secrets.refreshes", unit="1", description="Refreshes of cached answers by outcome"
    )
    probe = _Probe(tracer, calls, duration)
    handle = Instrumentation(manager, probe, refreshes)
    meter.create_observable_counter(
        "secrets.lookups",
        callbacks=[handle.observe_lookups],
        unit="1",
        description="Lookups answered from the cache (hit), by a fetch (miss), or stale",
    )
    return handle
