"""``GET /metrics``: request counts, latency percentiles and defects per class in Prometheus text format.

Written here rather than with ``prometheus_client``: that library's ``Summary`` exports only a count and a
sum in Python (no quantiles), and the issue asks for percentiles; the text format (version 0.0.4) is a few
lines. Quantiles are over a sliding window of the last :data:`WINDOW` observations per series.

Example:
    >>> m = Metrics(["background", "scratch"])
    >>> m.observe_request("POST", "/v1/inspect", 200, 0.05)
    >>> 'steelkd_requests_total{method="POST",route="/v1/inspect",status="200"} 1' in m.render()
    True
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Sequence

import numpy as np

__all__ = ["CONTENT_TYPE", "QUANTILES", "WINDOW", "Metrics"]

#: The Prometheus text exposition format's content type.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Quantiles reported for every latency series.
QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99)
#: Observations kept per latency series for its quantiles.
WINDOW = 4096


def _labels(**labels: str) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{k}="{esc(str(v))}"' for k, v in labels.items()) + "}"


class _Series:
    """Count, sum and a window of one latency series."""

    def __init__(self) -> None:
        self.count, self.total, self.window = 0, 0.0, deque(maxlen=WINDOW)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.window.append(seconds)


class Metrics:
    """Thread-safe counters of the service, rendered as Prometheus text.

    Args:
        class_names: the model's classes, background first (every defect class is exported, also at 0).
    """

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = list(class_names)
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._latency: dict[str, _Series] = defaultdict(_Series)
        self._inference = _Series()
        self._defects = dict.fromkeys(self.class_names[1:], 0)
        self._inspections = 0

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request (``route``: the path template, e.g. ``/v1/inspections/{inspection_id}``)."""
        with self._lock:
            self._requests[(method, route, str(status))] += 1
            self._latency[route].add(seconds)

    def observe_inspection(self, seconds: float, class_ids: Sequence[int]) -> None:
        """Count one stored inspection: its inference seconds and the class id of each defect."""
        with self._lock:
            self._inspections += 1
            self._inference.add(seconds)
            for c in class_ids:
                name = self.class_names[c] if c < len(self.class_names) else f"class{c}"
                self._defects[name] = self._defects.get(name, 0) + 1

    def render(self) -> str:
        """The Prometheus text of every series."""
        with self._lock:
            lines = ["# HELP steelkd_requests_total HTTP requests by method, route and status.",
                     "# TYPE steelkd_requests_total counter"]
            for (method, route, status), n in sorted(self._requests.items()):
                labels = _labels(method=method, route=route, status=status)
                lines.append(f"steelkd_requests_total{labels} {n}")
            lines += ["# HELP steelkd_request_latency_seconds HTTP request latency by route.",
                      "# TYPE steelkd_request_latency_seconds summary"]
            for route, series in sorted(self._latency.items()):
                lines += _summary("steelkd_request_latency_seconds", series, route=route)
            lines += ["# HELP steelkd_inference_seconds Decode, model and region extraction per inspection.",
                      "# TYPE steelkd_inference_seconds summary",
                      *_summary("steelkd_inference_seconds", self._inference),
                      "# HELP steelkd_inspections_total Inspections stored.",
                      "# TYPE steelkd_inspections_total counter",
                      f"steelkd_inspections_total {self._inspections}",
                      "# HELP steelkd_defects_total Defect regions found by the model, by class.",
                      "# TYPE steelkd_defects_total counter"]
            lines += [f"steelkd_defects_total{_labels(**{'class': name})} {n}"
                      for name, n in self._defects.items()]
        return "\n".join(lines) + "\n"


def _summary(name: str, series: _Series, **labels: str) -> list[str]:
    out = []
    if series.window:
        values = np.quantile(np.fromiter(series.window, float), QUANTILES)
        out += [f"{name}{_labels(**labels, quantile=str(q))} {v:.6f}"
                for q, v in zip(QUANTILES, values, strict=True)]
    suffix = _labels(**labels) if labels else ""
    return [*out, f"{name}_sum{suffix} {series.total:.6f}", f"{name}_count{suffix} {series.count}"]
