"""Progress lines off a terminal: counts, a readable rate and the time left."""

import io

from clica.progress import Progress, duration


def test_duration_reads_at_a_glance():
    assert [duration(s) for s in (0, 41.4, 725, 3720, float("inf"))] == ["0s", "41s", "12m05s", "1h02m", "?"]


def test_slow_work_shows_seconds_per_unit_and_the_time_left(monkeypatch):
    """Table runs take minutes each: '0.0 run/s, eta 2460s' said nothing; '410 s/run, eta 47m50s' does."""
    clock = iter([0.0, 410.0, 820.0])
    monkeypatch.setattr("clica.progress.time.monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = Progress(8, desc="table runs", unit="run", every_s=10, stream=out)
    bar.update(1)
    assert out.getvalue().strip() == "table runs: 1/8 (410 s/run, eta 47m50s)"
