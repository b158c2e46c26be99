"""Dashboard, panel and variable builders shared by the wan-otel dashboards
(grafana-foundation-sdk).

Every panel takes its datasource from a dashboard variable (``${datasource}`` for Prometheus,
``${tempo}`` for Tempo), never a hard-coded uid, so the JSON imports into any Grafana. Every
selector filters on the ``namespace``/``pod`` (and ``gpu``) variables, whose "All" value is
``.*``: it also matches series without the label (Docker Compose, the node-level exporter).
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import heatmap, stat, table, timeseries
from grafana_foundation_sdk.builders.common import StackingConfig, VizLegendOptions
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DashboardLink,
    DatasourceVariable,
    Panel,
    QueryVariable,
    Row,
    TextBoxVariable,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery as PromQuery
from grafana_foundation_sdk.builders.tempo import TempoQuery
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DynamicConfigValue,
    VariableModel,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from wan_otel import semconv

PROM = DataSourceRef(type_val="prometheus", uid="${datasource}")
TEMPO = DataSourceRef(type_val="tempo", uid="${tempo}")

POD_FILTER = f'{semconv.LABEL_NAMESPACE}=~"$namespace", {semconv.LABEL_POD}=~"$pod"'
GPU_FILTER = f'{POD_FILTER}, {semconv.LABEL_GPU}=~"$gpu"'
NS_POD = f"{semconv.LABEL_NAMESPACE}, {semconv.LABEL_POD}"
"""Grouping labels for one series per pod."""

RATE = "[$__rate_interval]"
"""Window of ``rate()``/``increase()`` per point (Grafana keeps it above the scrape interval)."""
RANGE = "[$__range]"
"""The dashboard's whole time range: totals and quantiles over it."""

Query = tuple[str, str]
"""(PromQL, legend format)."""


def selector(metric: str, filters: str = POD_FILTER, extra: str = "") -> str:
    """``metric{filters[, extra]}``."""
    return f"{metric}{{{filters}{', ' + extra if extra else ''}}}"


def dashboard(
    title: str,
    uid: str,
    *,
    description: str,
    refresh: str,
    since: str,
    variables: Sequence[Builder[VariableModel]],
) -> Dashboard:
    """A wan-otel dashboard showing ``since`` to now in the browser's time zone; ``refresh``
    is the auto-refresh interval ("" for none)."""
    found = (
        Dashboard(title)
        .uid(uid)
        .tags(["wan-otel"])
        .description(description)
        .refresh(refresh)
        .time(since, "now")
        .timezone("browser")
    )
    for variable in variables:
        found = found.with_variable(variable)
    return found


# -- variables --------------------------------------------------------------------------------


def datasource_variables() -> list[DatasourceVariable]:
    return [
        DatasourceVariable("datasource").label("Prometheus").type("prometheus"),
        DatasourceVariable("tempo").label("Tempo").type("tempo"),
    ]


def label_variable(
    name: str, query: str, label: str, sort: VariableSort = VariableSort.ALPHABETICAL_ASC
) -> QueryVariable:
    """A multi-value label variable whose "All" is the regex ``.*``."""
    return (
        QueryVariable(name)
        .label(label)
        .datasource(PROM)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(sort)
        .include_all(True)
        .all_value(".*")
        .multi(True)
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )


def scope_variables(source: str, with_gpu: bool) -> list[QueryVariable]:
    """namespace, pod (and gpu) from the label values of ``source``."""
    ns, pod, gpu = semconv.LABEL_NAMESPACE, semconv.LABEL_POD, semconv.LABEL_GPU
    found = [
        label_variable("namespace", f"label_values({source}, {ns})", "Namespace"),
        label_variable("pod", f'label_values({source}{{{ns}=~"$namespace"}}, {pod})', "Pod"),
    ]
    if with_gpu:
        query = f"label_values({selector(semconv.GPU_MEMORY_TOTAL)}, {gpu})"
        found.append(label_variable("gpu", query, "GPU"))
    return found


def textbox(name: str, label: str) -> TextBoxVariable:
    return TextBoxVariable(name).label(label)


# -- panels -----------------------------------------------------------------------------------


def _prom_targets(queries: Sequence[Query], exemplar: bool = False) -> list[PromQuery]:
    targets = []
    for i, (expr, legend) in enumerate(queries):
        target = PromQuery().ref_id(chr(ord("A") + i)).expr(expr).legend_format(legend)
        if exemplar:
            target = target.exemplar(True)
        targets.append(target)
    return targets


def row(title: str) -> Row:
    return Row(title)


def series(
    title: str,
    queries: Sequence[Query],
    *,
    unit: str,
    description: str,
    span: int = 12,
    height: int = 8,
    stack: bool = False,
    bars: bool = False,
    exemplar: bool = False,
    links: Sequence[DashboardLink] = (),
    max_value: float | None = None,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROM)
        .unit(unit)
        .span(span)
        .height(height)
        .min(0)
        .legend(
            VizLegendOptions()
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    if max_value is not None:
        panel = panel.max(max_value)
    if stack:
        panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL)).fill_opacity(40)
    if bars:
        panel = panel.draw_style(GraphDrawStyle.BARS).fill_opacity(60)
    if links:
        panel = panel.data_links(list(links))
    for target in _prom_targets(queries, exemplar):
        panel = panel.with_target(target)
    return panel


def single(
    title: str, expr: str, *, unit: str, description: str, span: int = 4, decimals: int = 2
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROM)
        .unit(unit)
        .decimals(decimals)
        .span(span)
        .height(4)
        .graph_mode(BigValueGraphMode.AREA)
        .with_target(PromQuery().ref_id("A").expr(expr).legend_format(title))
    )


def histogram_heatmap(title: str, expr: str, *, description: str, span: int = 12) -> heatmap.Panel:
    """A heatmap of ``le`` buckets (Prometheus ``format: heatmap``)."""
    return (
        heatmap.Panel()
        .title(title)
        .description(description)
        .datasource(PROM)
        .span(span)
        .height(8)
        .calculate(False)
        .with_target(
            PromQuery()
            .ref_id("A")
            .expr(expr)
            .format(PromQueryFormat.HEATMAP)
            .legend_format("{{le}}")
        )
    )


def instant_table(title: str, expr: str, *, description: str, span: int = 24) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .show_header(True)
        .datasource(PROM)
        .span(span)
        .height(6)
        .with_target(PromQuery().ref_id("A").expr(expr).instant().format(PromQueryFormat.TABLE))
    )


def tempo_table(
    title: str, traceql: str, *, description: str, trace_link: tuple[str, str], span: int = 24
) -> table.Panel:
    """A Tempo TraceQL search, one row per trace; ``trace_link`` (title, url) goes on the
    ``traceID`` column, where ``${__value.raw}`` is the trace id."""
    link_title, url = trace_link
    return (
        table.Panel()
        .title(title)
        .description(description)
        .show_header(True)
        .datasource(TEMPO)
        .span(span)
        .height(8)
        .override_by_name(
            "traceID",
            [DynamicConfigValue(id_val="links", value=[{"title": link_title, "url": url}])],
        )
        .with_target(TempoQuery().ref_id("A").query_type("traceql").query(traceql).limit(50))
    )


def trace_view(title: str, trace_id_expr: str, *, description: str) -> Panel:
    """Grafana's trace view (no SDK builder: a generic panel of type ``traces``)."""
    return (
        Panel()
        .type("traces")
        .title(title)
        .description(description)
        .datasource(TEMPO)
        .span(24)
        .height(14)
        .with_target(TempoQuery().ref_id("A").query_type("traceql").query(trace_id_expr))
    )


def link(title: str, url: str) -> DashboardLink:
    return DashboardLink(title).url(url).target_blank(False)
