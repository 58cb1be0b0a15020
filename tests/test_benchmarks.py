"""The benchmarks still run and print their figures (tiny sizes; the figures are not judged)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from classroom_spawner.local.hub import event_stream_reader

ROOT = Path(__file__).resolve().parent.parent


def test_event_stream_reader_joins_split_events_and_skips_junk():
    events = []
    feed = event_stream_reader(events.append)
    feed(b'data: {"progress": 1, "mess')
    assert events == []
    feed(b'age": "a"}\n\n: keepalive\n\ndata: not json\n\n')
    feed(b'data: {"ready": true}\n\ndata: {"x"')
    assert events == [{"progress": 1, "message": "a"}, {"ready": True}]


def run(script, *args, timeout):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_roster_load_benchmark_prints_its_figures():
    out = run(
        "roster_load.py",
        "--courses",
        "3",
        "--students",
        "20",
        "--repeat",
        "1",
        timeout=120,
    )
    assert "3 courses" in out and "enrolments" in out
    assert "full load:" in out and "lookup:" in out


@pytest.mark.hub
def test_class_start_benchmark_runs_and_reports(tmp_path):
    # one scenario keeps this short; the others share all of its machinery
    report = tmp_path / "run.json"
    out = run(
        "class_start_burst.py",
        "--students",
        "6",
        "--window",
        "2",
        "--scenarios",
        "queue",
        "--queue-limit",
        "2",
        "--json",
        str(report),
        timeout=600,
    )
    assert "queue (Q=2)" in out and "makespan" in out
    queue = json.loads(report.read_text())["summaries"]["queue"]
    assert queue["ready"] == 6 and queue["failed"] == 0
    assert queue["queue_max_in_flight"] <= 2
    assert queue["queue_final_in_flight"] == 0 and queue["queue_final_waiting"] == 0
    # a saved run prints the same table again
    again = run("class_start_burst.py", "--report", str(report), timeout=60)
    assert "servers ready" in again and "6 / 6" in again


@pytest.mark.hub
def test_plain_kubespawner_and_prepared_scenarios_with_lessons_and_a_plot(tmp_path):
    report = tmp_path / "run.json"
    out = run(
        "class_start_burst.py",
        "--students",
        "4",
        "--window",
        "2",
        "--scenarios",
        "kubespawner,prepared",
        "--lessons",
        "--json",
        str(report),
        timeout=600,
    )
    saved = json.loads(report.read_text())
    summaries = saved["summaries"]
    assert summaries["kubespawner"]["ready"] == 4, out
    assert summaries["prepared"]["ready"] == 4, out
    assert summaries["prepared"]["failed"] == 0
    # prepare ran before the burst and cloned the lessons into every volume
    prepare = saved["results"]["prepared"]["prepare"]
    assert prepare["exit"] == 0 and "lessons: 4 synced" in " ".join(prepare["summary"])
    assert saved["results"]["kubespawner"]["spawner"] == "kubespawner"
    # the plot is next to the JSON, and is a PNG
    plot = tmp_path / "run.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
