"""OpenTelemetry (SPEC 10): the counters, histogram and span, read back through the SDK's
in-memory metric reader and span exporter; names in attributes, never a value."""

from __future__ import annotations

import asyncio
import dis
import random
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from simpletuner_secrets import DocumentSecretProvider, ProviderError, SecretsManager
from simpletuner_secrets._resolver import Resolver
from simpletuner_secrets.integrations.otel import instrument
from simpletuner_secrets.keys import normalize_key
from tests.clock import FakeClock

VALUE = "otel-secret-value-never-an-attribute"


class Remote(DocumentSecretProvider):
    name = "remote"

    def __init__(self, data: Mapping[str, str]) -> None:
        super().__init__()
        self.data = {normalize_key(k): v for k, v in data.items()}
        self.fail = False
        self.hang = False

    async def load_document(self) -> Mapping[str, str]:
        if self.hang:
            await asyncio.sleep(30)
        if self.fail:
            raise ProviderError("remote: down", provider="remote")
        return dict(self.data)


@pytest.fixture
def telemetry() -> Iterator[tuple[InMemoryMetricReader, InMemorySpanExporter, dict[str, Any]]]:
    reader = InMemoryMetricReader()
    exporter = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    meters = MeterProvider(metric_readers=[reader])
    yield reader, exporter, {"meter_provider": meters, "tracer_provider": tracers}
    meters.shutdown()
    tracers.shutdown()


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """Each metric's name -> its (attributes, value or histogram count) points."""
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    data = reader.get_metrics_data()
    if data is None:  # nothing was recorded at all
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "simpletuner_secrets"
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = (point.count, point.sum)
                    found.setdefault(metric.name, []).append((dict(point.attributes), value))
    return found


def total(found: dict[str, list[tuple[dict[str, Any], Any]]], name: str, **attrs: str) -> Any:
    return sum(v for a, v in found.get(name, []) if all(a.get(k) == x for k, x in attrs.items()))


async def test_lookups_calls_refreshes_duration_and_spans_are_recorded(
    telemetry: tuple[InMemoryMetricReader, InMemorySpanExporter, dict[str, Any]],
) -> None:
    """Hits, a miss, stale answers, ok and failed calls, refreshes: each counted by name."""
    reader, exporter, providers = telemetry
    clock = FakeClock()
    remote = Remote({"API_KEY": VALUE})
    m = SecretsManager([remote], cache_ttl=60, timer=clock, rng=random.Random(1), max_stale=600)
    instrument(m, **providers)
    async with m:
        assert await m.get("API_KEY") == VALUE  # miss: one ok call
        for _ in range(5):
            await m.get("API_KEY")  # hits
        remote.fail = True
        clock.tick(70)
        assert await m.get("API_KEY") == VALUE  # revalidate fails: one error, stale
        clock.tick(5)
        remote.fail = False
        await m.refresh()  # a forced refresh: one ok call, a refresh
    found = points(reader)
    assert total(found, "secrets.lookups", outcome="miss") == 1
    assert total(found, "secrets.lookups", outcome="stale") == 1
    assert total(found, "secrets.lookups", outcome="hit") == 5
    assert total(found, "secrets.provider.calls", provider="remote", outcome="ok") == 2
    assert total(found, "secrets.provider.calls", provider="remote", outcome="error") == 1
    assert total(found, "secrets.refreshes", provider="remote", outcome="error") == 1
    assert total(found, "secrets.refreshes", provider="remote", outcome="ok") == 1
    [(attrs, (count, _sum))] = found["secrets.provider.duration"]
    assert attrs == {"provider": "remote"} and count == 3
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["secrets.provider.call"] * 3
    assert [s.attributes["outcome"] for s in spans] == ["ok", "error", "ok"]
    assert all(s.attributes["provider"] == "remote" for s in spans)
    everything = repr(found) + "".join(repr(dict(s.attributes)) for s in spans)
    assert VALUE not in everything


async def test_a_timeout_is_its_own_outcome(
    telemetry: tuple[InMemoryMetricReader, InMemorySpanExporter, dict[str, Any]],
) -> None:
    """A call cut by provider_timeout counts as outcome="timeout", its span an error."""
    reader, exporter, providers = telemetry
    remote = Remote({"K": VALUE})
    remote.hang = True
    m = SecretsManager([remote], provider_timeout=0.05)
    instrument(m, **providers)
    async with m:
        assert await m.get("K") is None
    found = points(reader)
    assert total(found, "secrets.provider.calls", provider="remote", outcome="timeout") == 1
    [span] = exporter.get_finished_spans()
    assert span.attributes["outcome"] == "timeout" and not span.status.is_ok


async def test_uninstrument_stops_recording(
    telemetry: tuple[InMemoryMetricReader, InMemorySpanExporter, dict[str, Any]],
) -> None:
    """After uninstrument() no span or call is recorded and the probe is gone."""
    reader, exporter, providers = telemetry
    m = SecretsManager([Remote({"K": VALUE})])
    handle = instrument(m, **providers)
    handle.uninstrument()
    async with m:
        await m.get("K")
    assert m.resolver.events.probe is None
    assert exporter.get_finished_spans() == ()
    assert "secrets.provider.calls" not in points(reader)


def test_the_cached_lookup_path_never_reaches_the_observation_hooks() -> None:
    """The fast path (Resolver.peek, SecretsManager.get's cached branch) names no event,
    probe or listener: without instrumentation a cached get does exactly what it did."""
    for code in (Resolver.peek, SecretsManager.get):
        names = {i.argval for i in dis.get_instructions(code) if isinstance(i.argval, str)}
        assert not names & {"events", "probe", "emit", "listeners"}, code


async def test_a_cancelled_call_ends_its_span_and_counts_no_outcome(
    telemetry: tuple[InMemoryMetricReader, InMemorySpanExporter, dict[str, Any]],
) -> None:
    """A back-end call cut short by aclose (its load cancelled, the caller gone): its span
    ends with outcome "cancelled" and no call is counted."""
    reader, exporter, providers = telemetry
    remote = Remote({"K": VALUE})
    remote.hang = True
    m = SecretsManager([remote])
    instrument(m, **providers)
    async with m:
        lookup = asyncio.ensure_future(m.get("K"))
        await asyncio.sleep(0.05)
        lookup.cancel()
        await asyncio.gather(lookup, return_exceptions=True)
        assert exporter.get_finished_spans() == ()  # the shared load goes on for others
    [span] = exporter.get_finished_spans()
    assert span.attributes["outcome"] == "cancelled"
    assert "secrets.provider.calls" not in points(reader)
