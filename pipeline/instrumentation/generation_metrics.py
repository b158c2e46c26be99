"""OTel metric instruments of the pipeline, recorded once per finished generation.

Histograms of generation, stage and step durations (seconds, ``semconv.DURATION_BUCKETS_S``
given as the advisory boundaries; ``telemetry.py`` also pins them with views for SDKs that
ignore advice) and counters of generations, frames and failures. Labels are bounded: model,
resolution, frames, offload (plus stage, status, error type). Never a run id or a prompt.
Depends on the OTel API only.
"""

from __future__ import annotations

from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider

from wan_otel import __version__, semconv
from wan_otel.pipeline.instrumentation.generation import Generation, Record

METER_NAME = "wan_otel.pipeline"

_BUCKETS = list(semconv.DURATION_BUCKETS_S)


class PipelineMetrics:
    """The instruments, and the finisher that records a generation into them."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        provider = meter_provider or metrics.get_meter_provider()
        meter = provider.get_meter(METER_NAME, __version__)
        self.generation_duration = meter.create_histogram(
            semconv.METRIC_GENERATION_DURATION,
            unit="s",
            description="Whole-generation latency",
            explicit_bucket_boundaries_advisory=_BUCKETS,
        )
        self.stage_duration = meter.create_histogram(
            semconv.METRIC_STAGE_DURATION,
            unit="s",
            description="Stage latency",
            explicit_bucket_boundaries_advisory=_BUCKETS,
        )
        self.step_duration = meter.create_histogram(
            semconv.METRIC_STEP_DURATION,
            unit="s",
            description="Denoising step latency (GPU time on CUDA)",
            explicit_bucket_boundaries_advisory=_BUCKETS,
        )
        self.generations = meter.create_counter(
            semconv.METRIC_GENERATIONS, unit="{generation}", description="Generations finished"
        )
        self.frames = meter.create_counter(
            semconv.METRIC_FRAMES, unit="{frame}", description="Frames generated"
        )
        self.failures = meter.create_counter(
            semconv.METRIC_FAILURES, unit="{generation}", description="Failed generations"
        )
        # No labels: a generation's labels are only complete once it has started, and the
        # alert rules need no more than "this pod is generating".
        self.active = meter.create_up_down_counter(
            semconv.METRIC_GENERATIONS_ACTIVE,
            unit="{generation}",
            description="Generations running now",
        )

        self.generation_energy = meter.create_histogram(
            semconv.METRIC_GENERATION_ENERGY,
            unit="J",
            description="GPU energy of one generation (NVML's energy counter)",
            explicit_bucket_boundaries_advisory=list(semconv.ENERGY_BUCKETS_J),
        )
        self.instrumentation_errors = meter.create_counter(
            semconv.METRIC_INSTRUMENTATION_ERRORS,
            unit="{error}",
            description="Errors in wan-otel's instrumentation code (never raised into the model)",
        )

    def energy(self, joules: float, root: Record) -> None:
        """One finished generation's GPU energy (its application measures it)."""
        self.generation_energy.record(joules, labels_of(root))

    def instrumentation_error(self, site: str) -> None:
        """Count one error of our own code; the site stays in the log, not in a label."""
        self.instrumentation_errors.add(1)

    def started(self) -> None:
        """A generation began; the finisher (``__call__``) counts it out again."""
        self.active.add(1)

    def __call__(self, generation: Generation) -> None:
        self.active.add(-1)
        root = generation.root
        ns = generation.timeline.time_ns
        if root.end is None:
            return
        labels = labels_of(root)

        def seconds(record: Record) -> float:
            end = record.end if record.end is not None else record.start
            return max(0, ns(end) - ns(record.start)) / 1e9

        self.generation_duration.record(seconds(root), labels)
        for child in root.children:
            stage = semconv.stage_for_span(child.name)
            if stage is not None and child.end is not None:
                stage_labels = {**labels, semconv.LABEL_STAGE: stage.metric_label}
                self.stage_duration.record(seconds(child), stage_labels)
        for step in _descendants(root, semconv.SPAN_DENOISE_STEP):
            if step.end is not None:
                self.step_duration.record(seconds(step), labels)
        if root.error_type is None:
            self.generations.add(1, {**labels, semconv.LABEL_STATUS: "ok"})
            frames = root.attributes.get(semconv.REQUEST_NUM_FRAMES)
            if isinstance(frames, int):
                self.frames.add(frames, labels)
        else:
            self.generations.add(1, {**labels, semconv.LABEL_STATUS: "error"})
            self.failures.add(1, {**labels, semconv.LABEL_ERROR_TYPE: root.error_type})


def labels_of(root: Record) -> dict[str, str]:
    """The bounded labels of a generation, from its root attributes."""
    attrs = root.attributes
    width, height = attrs.get(semconv.REQUEST_WIDTH), attrs.get(semconv.REQUEST_HEIGHT)
    return {
        semconv.LABEL_MODEL: str(attrs.get(semconv.MODEL_NAME, "unknown")),
        semconv.LABEL_RESOLUTION: f"{width}x{height}" if width and height else "unknown",
        semconv.LABEL_FRAMES: str(attrs.get(semconv.REQUEST_NUM_FRAMES, "unknown")),
        semconv.LABEL_OFFLOAD: str(attrs.get(semconv.OFFLOAD_MODE, "unknown")),
        semconv.LABEL_WORLD_SIZE: str(attrs.get(semconv.WORLD_SIZE, 1)),
    }


def _descendants(record: Record, name: str) -> list[Record]:
    found, todo = [], list(record.children)
    while todo:
        node = todo.pop()
        if node.name == name:
            found.append(node)
        todo.extend(node.children)
    return found
