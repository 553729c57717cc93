"""What a run prints: numbers, the phase table, warnings, departures from the paper, the preset choice
and the progress reporter (on a terminal and off it)."""

import pytest

from automod_cli.errors import UserError
from automod_cli.train import report
from automod_cli.train.schedule import resolve_config, step_plan


def test_numbers_as_people_read_them():
    assert [report.count(n) for n in (0, 500, 8000, 2_400_000, 20_040_000, 27_600_000)] == \
        ["0", "500", "8k", "2.4M", "20.04M", "27.6M"]
    assert [report.duration_text(s) for s in (5, 125, 7260, 3 * 86400 + 7200)] == ["5s", "2m 05s", "2h 01m", "3d 02h"]
    assert report.count(327_904, 3) == "328k" and report.count(25_413_120, 3) == "25.4M"
    assert report.width_text(1 / 16) == "1/16" and report.width_text(1.0) == "1"


def test_phase_rows_cut_at_the_duration():
    rows = report.phase_rows(resolve_config("toy64", {"duration": "20k"}))
    assert [(r["resolution"], r["start"], r["samples"], r["reached"]) for r in rows] == \
        [(4, 0, 8000, True), (8, 8000, 8000, True), (16, 16000, 4000, True), (32, 32000, 0, False),
         (64, 56000, 0, False)]


def test_duration_warnings():
    assert report.duration_warning(resolve_config("ffhq256")) is None
    ends_in_fade = report.duration_warning(resolve_config("ffhq256", {"duration": "31M"}))
    assert ends_in_fade.startswith("warning: the run ends at 31M samples, while the top phase (256²) is still "
                                   "fading in (α = 0.27)")
    assert report.duration_warning(resolve_config("toy64", {"init": "m.safetensors", "duration": "10k"})) is None


def test_departures_from_the_paper():
    what, departs = report.departures(resolve_config("ffhq512"), "cuda")
    assert what == "ffhq512: the reference's ffhq512 run" and departs == []
    _, departs = report.departures(resolve_config("ffhq256", {"batch": 16, "resolution": 64, "duration": "12M",
                                                              "precision": "auto"}), "cuda")
    assert departs == ["resolution 64² (paper 256²)", "batch [16, 16, 16, 16, 16] (paper [256, 256, 256, 128, 64])",
                       "duration 12M (the released model: 34.7M)", "bf16 autocast (paper fp32)"]
    assert report.departures(resolve_config("ffhq256", {"precision": "auto"}), "cpu")[1] == []  # fp32 on a CPU
    what, departs = report.departures(resolve_config("toy32"), "cpu")
    assert what == "toy32: a CPU-sized preset, not a paper run"
    assert departs[0].startswith("a short schedule (80k samples") and "width 1/16 (paper 1)" in departs


def test_the_preset_that_fits_the_data():
    info = lambda r: report.DataInfo("d", "folder", 10, r, [(r or 64, r or 64)] * 2)  # noqa: E731
    assert report.choose_preset(info(512))[0] == "ffhq512"
    assert report.choose_preset(info(64))[0] == "toy64"
    with pytest.raises(UserError, match="4 presets train 256²"):
        report.choose_preset(info(256))
    with pytest.raises(UserError, match="no preset trains images of mixed sizes"):
        report.choose_preset(report.DataInfo("d", "folder", 2, None, [(64, 64), (32, 32)]))


def record(cfg, samples, **over):
    plan = step_plan(cfg, samples)
    r = {"samples": samples, "phase": plan["phase"], "resolution": plan["resolution"], "alpha": plan["alpha"],
         "images_per_s": 100.0, "loss_e": 0.5, "kl_real": 0.3, "kl_fake": 0.4, "kl_gap": -0.01, "recon": 0.2,
         "kl_dec": 0.3, "cos": 2 - 0.75 / cfg["latent_dim"], "consistency": 0.01}
    r.update(over)
    return r


def test_the_progress_line():
    cfg = resolve_config("toy64", {"duration": "500k"})
    line = report.progress_line(cfg, record(cfg, 12_000), {"value": 87.654, "samples": 8000})
    assert line.startswith("phase 1 8² α 0.50 | kimg 12.0/500.0 | 100.0 img/s | ETA phase 40s, run ≥ 1h 21m |")
    assert " D cos 0.750 " in line and line.endswith("| FID 87.65 @ kimg 8.0")
    top = report.progress_line(cfg, record(cfg, 400_000))
    assert "ETA phase 16m 40s, run 16m 40s" in top  # the top phase: no later, slower phase
    # a line at a phase's last sample belongs to the phase just trained
    end_of_0 = report.progress_line(cfg, record(cfg, 8000, phase=0, resolution=4, alpha=1.0))
    assert end_of_0.startswith("phase 0 4² α 1.00 | kimg 8.0/500.0") and "ETA phase 0s, run ≥ " in end_of_0


def test_the_progress_reporter_on_a_terminal_and_off_it(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    cfg = resolve_config("toy32", {"duration": "12k"})
    said = []
    plain = report.ProgressReporter(cfg, said.append, interactive=False)
    plain.start()
    plain.update(2000, step_plan(cfg, 2000))
    plain.record(record(cfg, 2000))
    plain.metric({"value": 1.5, "samples": 2000}, "fid at 2k")
    plain.stop()
    assert said[0].startswith("phase 0 4² α 1.00 | kimg 2.000/12.000") and said[1] == "fid at 2k"

    bars = report.ProgressReporter(cfg, said.append, interactive=True)
    bars.start()
    for samples in (2000, 4000, 10000, 12000):  # crosses into phase 1
        bars.update(samples, step_plan(cfg, samples))
        bars.record(record(cfg, samples))
    bars.metric({"value": 1.5, "samples": 12000}, "fid at 12k")
    bars.stop()
    err = capsys.readouterr().err
    assert "phase 0 4²" in err and "phase 1 8²" in err and "fid at 12k" in err  # a bar per phase
    assert "phase 1 8² α 0.50 | kimg 12.000/12.000 | 100.0 img/s" in err  # the lines above the bars
    assert len(said) == 2  # nothing more through say: the console drew it
