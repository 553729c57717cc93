"""The progressive schedule against the reference table (spec §2)."""

import pytest

from automod_cli.errors import UserError
from automod_cli.train import schedule as S

K, M = 1_000, 1_000_000


def test_ffhq256_phase_starts_and_resolutions():
    cfg = S.resolve_config("ffhq256")
    starts = [0, 2400 * K, 4800 * K, 7200 * K, 9600 * K, 20040 * K, 30680 * K]
    assert cfg["phase_starts"] == starts
    for p, s in enumerate(starts):
        assert S.phase_at(cfg, s) == p and S.resolution_at(cfg, s) == 4 * 2**p
        if s:
            assert S.phase_at(cfg, s - 1) == p - 1
    assert S.phase_at(cfg, 34_700 * K) == 6
    assert cfg["duration"] == 34_700 * K


def test_other_presets_reference_values():
    assert S.resolve_config("ffhq512")["phase_starts"][-2:] == [30680 * K, 35700 * K]
    assert S.resolve_config("ffhq512")["duration"] == 42_400 * K
    celeb = S.resolve_config("celebahq256")
    assert celeb["phase_starts"][6] == 27500 * K and celeb["variant"] == "small"
    assert S.margin_at(celeb, 20040 * K) == 0.02 and S.margin_at(celeb, 27500 * K) == 0.04
    assert S.resolve_config("lsun-cars256")["phase_starts"][6] == 30000 * K
    assert S.resolve_config("lsun-bedrooms256")["duration"] == 27_600 * K
    assert S.resolve_config("lsun-cars256")["duration"] == 32_100 * K


def test_alpha_ramps_over_the_first_1_2M_of_each_phase():
    cfg = S.resolve_config("ffhq256")
    assert S.alpha_at(cfg, 0) == 1.0 and S.alpha_at(cfg, 1000 * K) == 1.0  # no fade at 4²
    assert S.alpha_at(cfg, 2400 * K) == 0.0
    assert S.alpha_at(cfg, 3000 * K) == pytest.approx(0.5)
    assert S.alpha_at(cfg, 3600 * K) == 1.0 and S.alpha_at(cfg, 4000 * K) == 1.0
    assert S.alpha_at(cfg, 20040 * K + 300 * K) == pytest.approx(0.25)
    assert S.match_x_at(cfg, 3000 * K) == 1.0 and S.match_x_at(cfg, 4000 * K) == 1.5


def test_lr_margin_batch_pool_by_resolution():
    cfg = S.resolve_config("ffhq512")
    at = {p: s + 1 for p, s in enumerate(cfg["phase_starts"])}
    assert [S.lr_at(cfg, at[p]) for p in range(8)] == [5e-4] * 4 + [1e-3] * 4  # 5e-4 up to 32², then 1e-3
    assert [S.margin_at(cfg, at[p]) for p in range(8)] == [0, 0] + [0.05] * 6
    assert [S.batch_at(cfg, at[p]) for p in range(8)] == [128, 128, 128, 64, 32, 32, 16, 4]
    assert S.pool_size_at(cfg, at[5]) == 200 and S.pool_size_at(cfg, at[6]) == 100
    plan = S.step_plan(cfg, at[3])
    assert plan["phase"] == 3 and plan["resolution"] == 32 and plan["batch"] == 64


def test_overrides_and_resolution_cut():
    cfg = S.resolve_config("ffhq256", {"resolution": 64, "lr": 2e-3, "batch": 8, "fade": "600k",
                                       "duration": "1.5M"})
    assert cfg["phase_starts"] == [0, 2400 * K, 4800 * K, 7200 * K, 9600 * K]
    assert cfg["lr"] == [2e-3] * 5 and cfg["batch"] == [8] * 5
    assert cfg["fade"] == 600 * K and cfg["duration"] == 1_500_000
    assert S.alpha_at(cfg, 2700 * K) == pytest.approx(0.5)
    with pytest.raises(UserError, match="unknown training setting"):
        S.resolve_config("toy32", {"no_such_key": 1})
    with pytest.raises(UserError, match="unknown preset"):
        S.resolve_config("ffhq1024")
    with pytest.raises(UserError, match="resolution 512 needs 8"):
        S.resolve_config("ffhq256", {"resolution": 512})
    with pytest.raises(UserError, match="increase"):
        S.resolve_config("toy32", {"phase_starts": [0, 5, 5, 9]})


def test_parse_count():
    assert S.parse_count("30M") == 30 * M
    assert S.parse_count("500k") == 500 * K
    assert S.parse_count("1.5M") == 1_500_000
    assert S.parse_count("20000") == 20000
    with pytest.raises(UserError):
        S.parse_count("lots")


def test_toy_presets_are_small():
    for name in ("toy32", "toy64"):
        cfg = S.resolve_config(name)
        assert cfg["width"] < 1 and cfg["duration"] < 1 * M
        assert len(cfg["phase_starts"]) == S.n_phases(cfg["resolution"])


def test_lr_ramps_down_along_a_half_cosine_over_the_end_of_the_run():
    cfg = S.resolve_config("toy32", {"lr": 1e-3, "duration": "100k", "lr_rampdown": "40k", "lr_final": 0.1})
    assert S.lr_at(cfg, 10 * K) == S.lr_at(cfg, 60 * K) == pytest.approx(1e-3)  # before the ramp: the phase's lr
    assert S.lr_at(cfg, 80 * K) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))     # half way down the cosine
    assert S.lr_at(cfg, 70 * K) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5 * (1 + 2 ** -0.5)))
    assert S.lr_at(cfg, 100 * K) == pytest.approx(1e-4) and S.step_plan(cfg, 99 * K)["lr"] < 1.1e-4
    assert S.lr_at(S.resolve_config("toy32", {"lr": 1e-3}), 79 * K) == pytest.approx(1e-3)  # no ramp by default
    for bad in ({"lr_rampdown": -1}, {"lr_final": 0}, {"lr_final": 1.5}):
        with pytest.raises(UserError):
            S.resolve_config("toy32", bad)
