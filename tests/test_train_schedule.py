"""The paper presets' schedules against the reference code's tables (AaltoVision/automodulator db683ed,
pioneer/), transcribed below with their source lines, and the reference scheduler's logic replayed on them.
"""

import pytest

from automod_cli.errors import UserError
from automod_cli.train import schedule as S

K, M = 1_000, 1_000_000

# makeTS (train.py:488-530): ts.add(start in k samples, _phase, _lr=[E, D], _margin) entries, in order.
MAKETS_FIRST = [(0, 0, 0.0005, 0), (2400, 1, 0.0005, 0),            # train.py:493-494
                (4800, 2, 0.0005, 0.05), (7200, 3, 0.0005, 0.05)]    # train.py:497-498
MAKETS = {
    "celebaHQ": MAKETS_FIRST + [(9600, 4, 0.001, 0.05), (20040, 5, 0.001, 0.02),     # train.py:501, 503
                                (27500, 6, 0.001, 0.04)],                              # train.py:504
    "ffhq": MAKETS_FIRST + [(9600, 4, 0.001, 0.05), (20040, 5, 0.001, 0.05),         # train.py:509, 511
                            (30680, 6, 0.001, 0.05), (35700, 7, 0.001, 0.05)],         # train.py:512-513
    "lsun": MAKETS_FIRST + [(9600, 4, 0.001, 0.05), (20040, 5, 0.001, 0.05),         # train.py:518, 523
                            (30000, 6, 0.001, 0.05), (38000, 6, 0.001, 0.08)],         # train.py:524-525
    "lsun --lsunm02e": MAKETS_FIRST + [(9600, 4, 0.001, 0.05), (20040, 5, 0.001, 0.02),  # train.py:518, 520
                                       (24840, 6, 0.001, 0.05)],                           # train.py:521
}
INITIAL_LR = 0.001  # --lr default (config.py:44), the optimisers' lr (session.py:114-115)
IMAGES_PER_STAGE = 2400e3  # config.py:146-147
MATCH_X, MATCHING_PHASE_X = 1.0, 1.5  # config.py:55, 57
# batch_size(reso) with two GPUs (session.py:25-26): DataParallel splits it, so it is the global batch
TWO_GPU_BATCH = {4: 256, 8: 256, 16: 256, 32: 128, 64: 64, 128: 28, 256: 32, 512: 14, 1024: 2}
# preset -> (the reference's data-set schedule, the released model's resolution and samples seen;
# the releases: automodulator-spec.md §2, "Released models")
RELEASED = {"ffhq256": ("ffhq", 256, 34_700 * K), "ffhq512": ("ffhq", 512, 42_400 * K),
            "celebahq256": ("celebaHQ", 256, 31_900 * K), "lsun-cars256": ("lsun", 256, 32_100 * K),
            "lsun-bedrooms256": ("lsun --lsunm02e", 256, 27_600 * K)}


def reference_schedule(entries, samples):
    """TrainingScheduler.update (training_scheduler.py:11-25) from its initial state (myphase 0, m = 0:
    training_scheduler.py:6-8; session.phase = --start_phase 0) with the optimisers at INITIAL_LR: an entry
    applies once ``samples`` reaches the *next* entry's start, so entry 0 never does.
    Returns (phase, lr, margin, samples into the entry's stage)."""
    myphase, phase, lr, m = 0, 0, INITIAL_LR, 0
    while myphase < len(entries) - 1 and entries[myphase + 1][0] * 1000 <= samples:
        myphase += 1
        _, phase, lr, m = entries[myphase]
    return phase, lr, m, samples - entries[myphase][0] * 1000  # get_iteration_of_current_phase (:31-32)


def reference_alpha_match_x(stage):
    """train.py:388-399 for a resolution not faded before: α = min(1, stage·2/images_per_stage), and
    match_x = match_x·matching_phase_x from half a stage on."""
    if stage >= IMAGES_PER_STAGE / 2:
        return 1.0, MATCH_X * MATCHING_PHASE_X
    return min(1, stage * 2.0 / IMAGES_PER_STAGE), MATCH_X


def probe_points(entries, duration):
    points = {0, 1, duration - 1}
    for start, *_ in entries:
        s = start * 1000
        points |= {s - 1, s, s + 1, s + 600 * K, s + 1_200 * K - 1, s + 1_200 * K, s + 2_000 * K}
    return sorted(p for p in points if 0 <= p < duration)


@pytest.mark.parametrize("preset", list(RELEASED))
def test_paper_presets_follow_the_reference_scheduler(preset):
    data, resolution, released_at = RELEASED[preset]
    cfg = S.resolve_config(preset)
    assert cfg["duration"] == released_at and cfg["resolution"] == resolution
    entries = MAKETS[data]
    for s in probe_points(entries, cfg["duration"]):
        phase, lr, margin, stage = reference_schedule(entries, s)
        phase = min(phase, S.n_phases(resolution) - 1)  # max_phase (config.py:149-157; ffhq256 stops at 256²)
        plan = S.step_plan(cfg, s)
        assert (plan["phase"], plan["resolution"]) == (phase, 4 * 2 ** phase), (preset, s)
        assert plan["lr"] == lr and plan["margin"] == margin, (preset, s)
        assert plan["batch"] == TWO_GPU_BATCH[plan["resolution"]], (preset, s)
        alpha, match_x = reference_alpha_match_x(stage)
        assert plan["alpha"] == pytest.approx(alpha, abs=1e-12) and plan["match_x"] == match_x, (preset, s)
        assert plan["pool_size"] == (200 if plan["resolution"] < 256 else 100)  # train.py:409
    # the released model's resolution is reached before the run ends
    assert S.step_plan(cfg, cfg["duration"] - 1)["resolution"] == resolution


def test_lsun_bedrooms_reaches_256_at_the_lsunm02e_start():
    cfg = S.resolve_config("lsun-bedrooms256")
    assert cfg["phase_starts"][5:] == [20_040 * K, 24_840 * K]  # train.py:520-521
    assert S.margin_at(cfg, 20_040 * K) == 0.02 and S.margin_at(cfg, 24_840 * K) == 0.05
    assert S.resolution_at(cfg, 27_599_999) == 256


def test_the_first_phase_fades_like_any_other():
    """At 4² the reference ramps α too (train.py:399), so its first 1.2M samples run with match_x 1.0 and
    without the image pool (train.py:215: the pool only once α >= 1)."""
    cfg = S.resolve_config("ffhq256")
    assert S.alpha_at(cfg, 0) == 0.0 and S.match_x_at(cfg, 0) == 1.0
    assert S.alpha_at(cfg, 600 * K) == pytest.approx(0.5) and S.match_x_at(cfg, 1_199_999) == 1.0
    assert S.alpha_at(cfg, 1_200 * K) == 1.0 and S.match_x_at(cfg, 1_200 * K) == 1.5


def test_toy_presets_keep_their_schedule_and_first_phase():
    # The CPU presets are not the reference's runs: they keep what they trained with before (α = 1 from
    # the start, no robust-loss carry-over, bf16 autocast on CUDA only), documented in schedule.py.
    for name in ("toy32", "toy64", "demo32"):
        cfg = S.resolve_config(name)
        assert cfg["width"] < 1 and cfg["duration"] < 1 * M
        assert len(cfg["phase_starts"]) == S.n_phases(cfg["resolution"])
        assert S.alpha_at(cfg, 0) == 1.0 and S.match_x_at(cfg, 0) == 1.5
        assert cfg["robust_carry_over"] is False and cfg["precision"] == "auto"
    assert S.resolve_config("toy64")["batch"] == [32, 32, 32, 32, 16]


def test_paper_presets_default_to_fp32():
    for name in RELEASED:
        assert S.resolve_config(name)["precision"] == "fp32"
    assert S.resolve_config("ffhq256", {"precision": "bf16"})["precision"] == "bf16"


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
    with pytest.raises(UserError, match="fade_first_phase must be true or false"):
        S.resolve_config("toy32", {"fade_first_phase": "yes"})


def test_a_saved_run_resumes_where_the_new_settings_keep_its_behaviour():
    # A run saved before a setting existed resumes when the new command keeps what the trainer then did.
    old = S.resolve_config("toy64")
    for key in S.BEFORE_KEY:
        del old[key]
    assert S.config_differences(old, S.resolve_config("toy64")) == []
    assert S.config_differences(old, S.resolve_config("toy64", {"fade_first_phase": True})) == ["fade_first_phase"]
    # compile says how the arithmetic runs, not what is trained: a run saved before it existed (or with
    # it off) resumes with it on, and the other way round
    del old["compile"]
    assert S.config_differences(old, S.resolve_config("toy64", {"compile": True})) == []
    assert S.config_differences(S.resolve_config("toy64", {"compile": True}), S.resolve_config("toy64")) == []
    with pytest.raises(UserError, match="compile must be true or false"):
        S.resolve_config("toy64", {"compile": "yes"})


def test_parse_count():
    assert S.parse_count("30M") == 30 * M
    assert S.parse_count("500k") == 500 * K
    assert S.parse_count("1.5M") == 1_500_000
    assert S.parse_count("20000") == 20000
    with pytest.raises(UserError):
        S.parse_count("lots")


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
