"""benchmarks/run_legs.py splits a resumed run's log.jsonl into its legs by the sample counts at which
they stopped, and gives each leg's ranges: speed at the top resolution without a resumed leg's first line
(it spans the resume and the compiling), the reconstruction loss and the codes' cosine over all its lines."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "run_legs.py"


def _line(samples, resolution, speed, recon, cos):
    return json.dumps({"samples": samples, "resolution": resolution, "images_per_s": speed, "recon": recon,
                       "real_code_cos": cos})


def _legs(tmp_path, lines, *ends):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(lines) + "\n")
    return subprocess.run([sys.executable, str(SCRIPT), str(log), *map(str, ends)], capture_output=True,
                          text=True, timeout=60)


def test_each_leg_gets_its_own_ranges(tmp_path):
    lines = [
        _line(5000, 32, 80.0, 0.30, 0.60),    # leg 1, below the top resolution: no speed
        _line(10000, 64, 8.0, 0.25, 0.40),    # leg 1
        _line(15000, 64, 9.0, 0.24, 0.30),    # leg 1 stops at 15,000
        _line(20000, 64, 2.0, 0.22, 0.35),    # leg 2's first line: compiling, left out of its speed
        _line(25000, 64, 15.0, 0.20, 0.20),
        _line(30000, 64, 17.0, 0.21, 0.25),   # leg 2 stops at 30,000
    ]
    r = _legs(tmp_path, lines, 15000, 30000)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert rows == ["| 1 | 0–15,000 | 3 | 8.0–9.0 | 0.24–0.30 | 0.30–0.60 |",
                    "| 2 | 15,000–30,000 | 3 | 15.0–17.0 | 0.20–0.22 | 0.20–0.35 |"]


def test_a_leg_with_no_line_ends_out_of_order_or_an_empty_log_is_one_line_and_an_error(tmp_path):
    lines = [_line(5000, 64, 8.0, 0.3, 0.5), _line(10000, 64, 9.0, 0.3, 0.5)]
    for log_lines, ends, message in [(lines, (10000, 5000), "leg ends must increase: [10000, 5000]"),
                                     (lines, (10000, 12000), "no log line between 10,000 and 12,000 samples"),
                                     ([""], (5000,), f"{tmp_path / 'log.jsonl'}: no log lines")]:
        r = _legs(tmp_path, log_lines, *ends)
        assert r.returncode != 0 and r.stderr.strip().splitlines() == [message], r.stderr


def test_a_broken_line_names_the_file_and_line(tmp_path):
    r = _legs(tmp_path, [_line(5000, 64, 8.0, 0.3, 0.5), "{not json"], 5000)
    assert r.returncode != 0 and r.stderr.startswith(f"{tmp_path / 'log.jsonl'}:2: not a JSON line")


def test_a_field_an_older_log_lacks_reads_as_a_dash(tmp_path):
    lines = [json.dumps({"samples": 5000, "resolution": 64, "images_per_s": 8.0, "recon": 0.3})]
    r = _legs(tmp_path, lines, 5000)
    assert r.returncode == 0, r.stderr
    assert "| 1 | 0–5,000 | 1 | 8.0–8.0 | 0.30–0.30 | — |" in r.stdout.splitlines()


def test_a_metric_line_in_the_log_is_not_a_reading(tmp_path):
    metric = json.dumps({"metric": "fid50k_full", "samples": 10000, "value": 80.0, "variant": "ema"})  # no resolution
    r = _legs(tmp_path, [_line(5000, 64, 8.0, 0.3, 0.5), metric, _line(10000, 64, 9.0, 0.2, 0.4)], 10000)
    assert r.returncode == 0, r.stderr
    assert "| 1 | 0–10,000 | 2 | 8.0–9.0 | 0.20–0.30 | 0.40–0.50 |" in r.stdout.splitlines()
