"""Draw the report's data (tuner/report/_data.py) with plotly, as one self-contained HTML
page: plotly.js is inlined once, nothing is fetched when the file is opened offline."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from tuner.errors import UserError
from tuner.report._data import CATEGORIES, FEASIBLE, PRUNED, ProfileRow, ReportData, TrialPoint
from tuner.vram import VRAM_MARGIN_MB

COLORS = {
    FEASIBLE: "#1f77b4",
    "over the VRAM budget": "#d62728",
    "below the context floor": "#ff7f0e",
    "spill suspected": "#9467bd",
    PRUNED: "#9a9a9a",
}
SIDE_COLORS = {"app": "#8c8c8c", "tuned": "#2ca02c"}
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"  # no web font
SECTIONS = (
    ("before-after", "Before and after: the app's profiles and the exported tiers"),
    ("tradeoff", "Throughput against first-token latency"),
    ("layers", "GPU layers and VRAM"),
    ("history", "Optimisation history and parameter importances"),
    ("bandwidth", "Memory-bandwidth limit"),
    ("failures", "Trials without figures"),
    ("provenance", "Machine, model and build"),
)


def _go() -> Any:
    try:
        import plotly.graph_objects as go
    except ModuleNotFoundError:
        raise UserError("plotly is not installed; pip install plotly") from None
    return go


def _layout(fig: Any, title: str, **kw: Any) -> Any:
    fig.update_layout(
        title=title,
        font={"family": FONT},
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        height=kw.pop("height", 430),
        **kw,
    )
    return fig


def _hover(p: TrialPoint) -> str:
    extra = f", {p.label}" if p.label != "sampled" else ""
    vram = f", VRAM {p.vram_mb:.0f} MB" if p.vram_mb is not None else ""
    return (
        f"#{p.number}{extra}<br>{p.tok_s:.1f} tok/s, {p.latency_ms:.0f} ms{vram}<br>"
        f"n_gpu_layers {p.n_gpu_layers}, n_ctx {p.n_ctx}<br>{p.category}"
    )


def before_after_figure(d: ReportData) -> Any:
    from plotly.subplots import make_subplots

    go = _go()
    fig = make_subplots(
        rows=1,
        cols=4,
        subplot_titles=("tok/s", "first token (ms)", "free VRAM asked (MB)", "n_ctx"),
    )
    _before_after_bars(fig, go, d.before_after)
    _before_after_lines(fig, d)
    fig.update_xaxes(tickangle=-35)
    return _layout(
        fig,
        "grey: the app's profiles, green: the exported tiers",
        height=480,
        barmode="group",
        legend={"orientation": "h", "y": -0.45},
    )


def _before_after_bars(fig: Any, go: Any, rows: Sequence[ProfileRow]) -> None:
    """One bar per profile in each panel: tok/s, first token (cold, warm), VRAM asked, n_ctx."""
    names = [f"{r.name} (#{r.trial})" if r.trial is not None else r.name for r in rows]
    colors = [SIDE_COLORS[r.side] for r in rows]
    fig.add_trace(
        go.Bar(
            x=names, y=[r.tok_s for r in rows], marker_color=colors, name="tok/s", showlegend=False
        ),
        1,
        1,
    )
    fig.add_trace(
        go.Bar(x=names, y=[r.cold_ttft_ms for r in rows], name="cold", marker_color="#6baed6"), 1, 2
    )
    fig.add_trace(
        go.Bar(
            x=names,
            y=[r.warm_ttft_ms for r in rows],
            name="warm (next turn)",
            marker_color="#08519c",
        ),
        1,
        2,
    )
    fig.add_trace(
        go.Bar(
            x=names,
            y=[r.need_mb for r in rows],
            marker_color=colors,
            name="VRAM need",
            showlegend=False,
        ),
        1,
        3,
    )
    fig.add_trace(
        go.Bar(
            x=names, y=[r.n_ctx for r in rows], marker_color=colors, name="n_ctx", showlegend=False
        ),
        1,
        4,
    )


def _before_after_lines(fig: Any, d: ReportData) -> None:
    """The VRAM budget and the context floor, dashed over their panels."""
    if d.facts.budget_mb is not None and d.facts.gpu_offload:
        fig.add_hline(
            y=d.facts.budget_mb,
            line_dash="dash",
            line_color="#d62728",
            row=1,
            col=3,
            annotation_text="budget",
        )
    if d.facts.min_ctx is not None:
        fig.add_hline(
            y=d.facts.min_ctx,
            line_dash="dash",
            line_color="#ff7f0e",
            row=1,
            col=4,
            annotation_text="floor",
        )


def tradeoff_figure(d: ReportData) -> Any:
    go = _go()
    fig = go.Figure()
    for cat in CATEGORIES:
        pts = [p for p in d.points if p.category == cat]
        if not pts:
            continue
        fig.add_trace(
            go.Scatter(
                x=[p.latency_ms for p in pts],
                y=[p.tok_s for p in pts],
                customdata=[p.number for p in pts],
                mode="markers",
                name=f"{cat} ({len(pts)})",
                text=[_hover(p) for p in pts],
                hoverinfo="text",
                marker={
                    "color": COLORS[cat],
                    "size": 9,
                    "symbol": "circle-open" if cat == PRUNED else "circle",
                },
            )
        )
    by_number = {p.number: p for p in d.points}
    front = sorted((by_number[n] for n in d.pareto if n in by_number), key=lambda p: p.latency_ms)
    if front:
        fig.add_trace(
            go.Scatter(
                x=[p.latency_ms for p in front],
                y=[p.tok_s for p in front],
                mode="lines",
                name="Pareto front",
                line={"color": "#1f77b4", "dash": "dot"},
                hoverinfo="skip",
            )
        )
    if d.chosen is not None and d.chosen in by_number:
        c = by_number[d.chosen]
        fig.add_trace(
            go.Scatter(
                x=[c.latency_ms],
                y=[c.tok_s],
                mode="markers",
                name=f"chosen #{c.number} (--prefer {d.prefer})",
                marker={
                    "symbol": "star",
                    "size": 18,
                    "color": "#ffd700",
                    "line": {"color": "black", "width": 1},
                },
                hoverinfo="skip",
            )
        )
    return _layout(
        fig,
        "each measured trial (hover for its settings)",
        xaxis={"title": f"{d.facts.latency} first-token latency (ms, log)", "type": "log"},
        yaxis={"title": "generation tok/s"},
    )


def layers_figure(d: ReportData) -> Any:
    go = _go()
    pts = [p for p in d.points if p.n_gpu_layers is not None and p.category != PRUNED]
    vrams = [p.vram_mb for p in pts if p.vram_mb is not None]
    top = max([*vrams, d.facts.budget_mb or 0.0]) or 1.0
    budget = d.facts.budget_mb
    title = "peak VRAM (MB)" + (f"<br>budget {budget:.0f}" if budget else "")
    fig = go.Figure(
        go.Scatter(
            x=[p.n_gpu_layers for p in pts],
            y=[p.tok_s for p in pts],
            mode="markers",
            text=[_hover(p) for p in pts],
            hoverinfo="text",
            customdata=[p.number for p in pts],
            marker={
                "size": 10,
                "color": [p.vram_mb if p.vram_mb is not None else 0.0 for p in pts],
                "colorscale": "Viridis",
                "cmin": 0,
                "cmax": top,
                "symbol": ["x" if p.category != FEASIBLE else "circle" for p in pts],
                "colorbar": {"title": title},
            },
            name="trials",
        )
    )
    return _layout(
        fig,
        "tok/s by GPU layers (x: not feasible)",
        xaxis={"title": "n_gpu_layers"},
        yaxis={"title": "generation tok/s"},
    )


def vram_figure(d: ReportData) -> Any:
    go = _go()
    pairs = d.vram_pairs
    fig = go.Figure(
        go.Scatter(
            x=[p.predicted_mb for p in pairs],
            y=[p.measured_mb for p in pairs],
            mode="markers",
            text=[
                f"#{p.number}: predicted {p.predicted_mb:.0f}, measured {p.measured_mb:.0f} MB"
                for p in pairs
            ],
            hoverinfo="text",
            name="trials",
        )
    )
    hi = max([v for p in pairs for v in (p.predicted_mb, p.measured_mb)] or [1.0])
    fig.add_trace(
        go.Scatter(
            x=[0, hi],
            y=[0, hi],
            mode="lines",
            name="predicted = measured",
            line={"dash": "dot", "color": "#888"},
        )
    )
    if d.facts.budget_mb is not None:
        fig.add_hline(
            y=d.facts.budget_mb - VRAM_MARGIN_MB,
            line_dash="dash",
            line_color="#d62728",
            annotation_text=f"budget − {VRAM_MARGIN_MB:.0f} MB margin",
        )
    return _layout(
        fig,
        "predicted (before loading) vs measured peak VRAM",
        xaxis={"title": "predicted MB"},
        yaxis={"title": "measured MB"},
    )


def history_figure(d: ReportData) -> Any:
    go = _go()
    h = d.history
    fig = go.Figure()
    for ok, name, color in ((True, "feasible", "#1f77b4"), (False, "not feasible", "#bbbbbb")):
        pts = [p for p in h if p.feasible is ok]
        fig.add_trace(
            go.Scatter(
                x=[p.number for p in pts],
                y=[p.tok_s for p in pts],
                mode="markers",
                name=name,
                marker={"color": color},
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[p.number for p in h],
            y=[p.best_so_far for p in h],
            mode="lines",
            line_shape="hv",
            name="best feasible so far",
            line={"color": "#2ca02c"},
        )
    )
    return _layout(
        fig, "tok/s per trial", xaxis={"title": "trial"}, yaxis={"title": "generation tok/s"}
    )


def importance_figure(d: ReportData) -> Any:
    go = _go()
    items = sorted(d.importances.values.items(), key=lambda kv: kv[1])
    fig = go.Figure(
        go.Bar(
            x=[v for _, v in items],
            y=[k for k, _ in items],
            orientation="h",
            marker_color="#1f77b4",
        )
    )
    return _layout(
        fig,
        f"importance for tok/s (PED-ANOVA, {d.importances.n_trials} feasible trials)",
        xaxis={"title": "share"},
        height=320,
    )


def _div(fig: Any) -> str:
    return str(
        fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            config={"displaylogo": False, "responsive": True},
        )
    )


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _num(v: float | None, fmt: str = ".1f") -> str:
    return "-" if v is None else format(v, fmt)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Cells are already escaped HTML."""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _missing(d: ReportData, key: str) -> str:
    what = d.missing.get(key)
    return f'<p class="missing">not in this study: {_e("; ".join(what))}</p>' if what else ""


def _before_after(d: ReportData) -> str:
    out = _before_after_note(d)
    if d.before_after:
        out += _div(before_after_figure(d)) + _profile_table(d)
    if d.confirmations:
        out += _confirmation_table(d)
    return out


def _before_after_note(d: ReportData) -> str:
    """The budget, floor and tiers' source the table is read against."""
    lines = []
    if d.facts.budget_mb is not None:
        lines.append(
            f"VRAM budget {d.facts.budget_mb:.0f} MB (a tier asks for its peak + "
            f"{VRAM_MARGIN_MB:.0f} MB)"
        )
    if d.facts.min_ctx is not None:
        lines.append(f"context floor n_ctx &ge; {d.facts.min_ctx}")
    if d.profile_source:
        lines.append(f"tiers from {_e(d.profile_source)}")
    return f"<p>{'; '.join(lines)}.</p>" if lines else ""


def _profile_table(d: ReportData) -> str:
    rows = [
        [
            _e(r.side),
            _e(r.name),
            _e("-" if r.trial is None else f"#{r.trial}"),
            _e(r.source),
            _num(r.tok_s),
            _num(r.cold_ttft_ms, ".0f"),
            _num(r.warm_ttft_ms, ".0f"),
            _num(r.vram_mb, ".0f"),
            _num(r.need_mb, ".0f"),
            _e(r.n_ctx),
            _e(r.note),
        ]
        for r in d.before_after
    ]
    head = (
        "",
        "profile",
        "trial",
        "figures",
        "tok/s",
        "cold TTFT ms",
        "warm TTFT ms",
        "peak VRAM MB",
        "free VRAM asked MB",
        "n_ctx",
        "note",
    )
    return _table(head, rows)


def _confirmation_table(d: ReportData) -> str:
    return "<h3>Confirmation runs</h3>" + _table(
        (
            "trial",
            "profile",
            "status",
            "session",
            "tok/s",
            "cold TTFT ms",
            "warm TTFT ms",
            "peak VRAM MB",
            "what",
        ),
        [
            [
                _e(f"#{r.number}"),
                _e(r.name),
                _e(r.status),
                _e(r.session),
                _num(r.tok_s),
                _num(r.cold_ttft_ms, ".0f"),
                _num(r.warm_ttft_ms, ".0f"),
                _num(r.vram_mb, ".0f"),
                _e(r.reason),
            ]
            for r in d.confirmations
        ],
    )


def _tradeoff(d: ReportData) -> str:
    counts = ", ".join(f"{n} {k}" for k, n in d.unplotted.items()) or "none"
    reused = f"; {d.reused} reused an earlier trial's figures (same settings)" if d.reused else ""
    front = ", ".join(f"#{n}" for n in d.pareto) or "none"
    chosen = f"#{d.chosen}" if d.chosen is not None else "none (no trial fits the VRAM budget)"
    text = (
        f"<p>{len(d.points)} trials plotted. Without figures (not plotted, listed below): "
        f"{_e(counts)}{_e(reused)}. Pareto front (feasible): {_e(front)}; chosen by "
        f"--prefer {_e(d.prefer)}: {_e(chosen)}.</p>"
    )
    return text + (_div(tradeoff_figure(d)) if d.points else "")


def _layers(d: ReportData) -> str:
    """The layers chart where it shows something: layer counts that vary, or VRAM readings
    (a CPU study has neither: every point at 0 layers, no colour); then what is missing."""
    varied = len({p.n_gpu_layers for p in d.points}) > 1
    out = _div(layers_figure(d)) if d.points and (varied or "layers" not in d.missing) else ""
    out += _missing(d, "layers") + _missing(d, "vram")
    if d.vram_pairs:
        out += _div(vram_figure(d))
    return out


def _history(d: ReportData) -> str:
    out = _div(history_figure(d)) if d.history else ""
    out += _missing(d, "importance")
    if d.importances.values:
        out += _div(importance_figure(d))
    return out


def _bandwidth(d: ReportData) -> str:
    b = d.bandwidth
    if b.share is None:
        return f"<p>{_e(b.note)}</p>"
    assert b.weight_bytes is not None and b.limit_tok_s is not None and b.tok_s is not None
    return (
        f"<p>The chosen trial #{b.trial} generates <b>{b.tok_s:.1f} tok/s</b> at full offload: "
        f"<b>{b.share * 100:.0f} %</b> of the memory-bandwidth limit "
        f"({b.bandwidth_gb_s:.0f} GB/s / {b.weight_bytes / 1e9:.2f} GB of weights read per "
        f"token ({_e(b.weight_source)}) = {b.limit_tok_s:.0f} tok/s).</p>"
    )


def _failures(d: ReportData) -> str:
    if not d.failures:
        return "<p>Every trial has figures.</p>"
    rows = []
    for f in d.failures:
        tail = (
            f"<details><summary>stderr</summary><pre>{_e(f.stderr_tail)}</pre></details>"
            if f.stderr_tail
            else ""
        )
        rows.append(
            [
                _e(f"#{f.number}"),
                _e(f.label),
                _e(f.status),
                _e(f.reason),
                _e(f.phase),
                _e(f.returncode),
                tail,
            ]
        )
    return _table(("trial", "role", "status", "reason", "phase", "exit", "stderr tail"), rows)


def _provenance(d: ReportData) -> str:
    return _table(("", ""), [[_e(k), _e(v)] for k, v in d.provenance])


CSS = (
    f"body{{font-family:{FONT};margin:2em auto;max-width:1200px;padding:0 1em;color:#222}}"
    "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}"
    "table{border-collapse:collapse;font-size:.85em;margin:.5em 0}"
    "td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}"
    "th{background:#f4f4f4}.missing{color:#a05a00}pre{white-space:pre-wrap;max-width:60em}"
    "nav a{margin-right:1em}"
)


def render_html(d: ReportData) -> str:
    """The whole page: every section in SECTIONS order, plotly.js inlined in the head."""
    from plotly.offline import get_plotlyjs

    _go()
    bodies = {
        "before-after": _before_after,
        "tradeoff": _tradeoff,
        "layers": _layers,
        "history": _history,
        "bandwidth": _bandwidth,
        "failures": _failures,
        "provenance": _provenance,
    }
    keys = {"before-after": "before_after", "layers": "layers"}
    parts = []
    for anchor, title in SECTIONS:
        miss = _missing(d, keys.get(anchor, anchor))
        parts.append(
            f'<section id="{anchor}"><h2>{_e(title)}</h2>{miss}{bodies[anchor](d)}</section>'
        )
    f = d.facts
    nav = "".join(f'<a href="#{a}">{_e(t.split(":")[0])}</a>' for a, t in SECTIONS)
    head = (
        f"<h1>dm-tune report: {_e(f.name)}</h1><p>{_e(f.model_file or 'unknown model')}, "
        f"{f.n_trials} trials, storage {_e(f.storage)}</p><nav>{nav}</nav>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>dm-tune report: {_e(f.name)}</title><style>{CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f"{head}{''.join(parts)}</body></html>\n"
    )
