"""The report: spans + GPU samples -> Report (pure) -> text, JSON or Markdown."""

from wan_otel.report.build import build_report
from wan_otel.report.model import Report
from wan_otel.report.render_json import render_json, report_dict
from wan_otel.report.render_markdown import render_markdown
from wan_otel.report.render_text import render_text

__all__ = ["Report", "build_report", "render_json", "render_markdown", "render_text", "report_dict"]
