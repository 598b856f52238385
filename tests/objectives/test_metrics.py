from __future__ import annotations

import pytest

from objectives.metrics import Sample, TrialMetrics, cv


def test_medians_and_spread() -> None:
    samples = [
        Sample(10.0, 100.0, 500.0, 20.0),
        Sample(12.0, 90.0, 520.0, 25.0),
        Sample(11.0, 300.0, 510.0, None),
    ]
    m = TrialMetrics.from_samples(
        samples, load_s=1.0, peak_rss_mb=5.0, n_prompt_tokens=10, n_generated=8
    )
    assert m.gen_tok_s == 11.0
    assert m.ttft_ms == 100.0  # the median ignores the one slow outlier
    assert m.warm_ttft_ms == 22.5
    assert m.gen_tok_s_cv == pytest.approx(cv([10.0, 12.0, 11.0]))
    assert m.vram_mb is None


def test_round_trip() -> None:
    m = TrialMetrics.from_samples(
        [Sample(1.0, 2.0, 3.0)], load_s=0.1, peak_rss_mb=1.0, n_prompt_tokens=1, n_generated=1
    )
    assert TrialMetrics.from_dict(m.to_dict()) == m


def test_stored_figures_keep_six_significant_digits() -> None:
    """Short enough for optuna-dashboard (it cuts an attribute at 1024 characters), and the
    trial's objective values come from the same figures."""
    s = Sample(304.14495328146904, 164.98195000002625, 11413.369765599815, tokens=128)
    m = TrialMetrics.from_samples(
        [s, s, s],
        load_s=0.9288417509999931,
        peak_rss_mb=4288.79296875,
        n_prompt_tokens=1883,
        n_generated=128,
    )
    d = m.to_dict()
    assert d["gen_tok_s"] == 304.145 and d["ttft_ms"] == 164.982
    assert d["samples"][0]["prompt_tok_s"] == 11413.4 and d["samples"][0]["tokens"] == 128
    assert d["load_s"] == 0.928842 and d["n_prompt_tokens"] == 1883
    assert TrialMetrics.from_dict(d).to_dict() == d


def test_single_sample_has_zero_spread() -> None:
    assert cv([5.0]) == 0.0
