"""`automod train --metrics fid`: FID of EMA samples against the training data during training, with the
`automod fid` code and the random-weight Inception of the FID tests (BatchNorm statistics re-estimated on
real photos, tests/test_metrics_fid.py)."""

import json

import numpy as np
import pytest
import torch

from automod_cli.cli.app import main
from conftest import write_random_images
from test_metrics_fid import INCEPTION_FILE, bn_estimated_inception_state

pytestmark = pytest.mark.usefixtures("one_thread")  # (conftest)


@pytest.fixture(scope="module")
def inception_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    torch.save(bn_estimated_inception_state(), d / INCEPTION_FILE)
    return d


@pytest.fixture()
def frechet_inputs(monkeypatch):
    """Record the statistics each FID is computed from, and stand in a cheap distance for the 2048-d matrix
    square root (a minute or more on a busy 2-core machine; tests/test_metrics_fid.py tests it): two FIDs
    from the same statistics are the same FID."""
    from automod_cli.metrics import fid as core

    seen = []

    def record(mu1, sigma1, mu2, sigma2, **_):
        seen.append((mu1, sigma1, mu2, sigma2))
        return core.FrechetResult(float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2)), 0.0, 0.0, 0.0)

    monkeypatch.setattr(core, "frechet_distance", record)
    return seen


def test_fid_during_training_is_logged_shown_and_equals_automod_fid(tmp_path, monkeypatch, capsys, inception_dir,
                                                                     frechet_inputs):
    monkeypatch.setenv("AUTOMOD_WEIGHTS_DIR", str(inception_dir))
    monkeypatch.setenv("AUTOMOD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AUTOMOD_RESULTS", str(tmp_path / "results.jsonl"))
    data = write_random_images(tmp_path / "data", 8, 8, seed=4)
    run = tmp_path / "run"
    args = ["train", str(data), "--out", str(run), "--preset", "toy32", "--resolution", "8", "--width", "0.015625",
            "--latent-dim", "16", "--set", "phase_starts=[0,16]", "--fade", "16", "--duration", "32", "--batch-size",
            "8", "--workers", "0", "--device", "cpu", "--log-every", "8", "--checkpoint-every", "32",
            "--grid-every", "64", "--threads", "1", "--metrics", "fid", "--metrics-every", "16", "--metrics-n", "8"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "  metrics   fid of 8 EMA samples every 16 samples and at the end" in err
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    fids = [r for r in lines if r.get("metric") == "fid"]
    assert [(r["samples"], r["resolution"], r["variant"], r["n"], r["data"]["n"]) for r in fids] == \
        [(16, 8, "fid8", 8, 8), (32, 8, "fid8", 8, 8)]
    assert all(r["value"] > 0 and r["generated"]["decoder"] == "EMA" for r in fids)
    assert [r["samples"] for r in lines if "metric" not in r] == [8, 16, 24, 32]  # the loss lines are untouched
    # shown: a line per evaluation, and the latest value in the progress line after it
    assert f"fid8 at 32 samples (8², α 1.00): {fids[-1]['value']:.3f}" in err
    progress = [x for x in err.splitlines() if x.startswith("phase ")]
    assert progress[-2].endswith(f"| FID {fids[0]['value']:.2f} @ kimg 0.0")  # (at 24 samples: the one at 16)
    # the real statistics were cached, keyed by content, resolution and weights
    cached = list((tmp_path / "cache" / "fid-stats").glob("train-data-8px-*.npz"))
    assert len(cached) == 1 and fids[0]["data"]["cache_file"] == str(cached[0])
    assert fids[0]["data"]["from_cache"] is False

    # At the end (top phase, α = 1) it is what `automod fid -m MODEL --data DATA` measures: the EMA decoder,
    # codes of seed 0, noise off, against the same images (all 8 here): the same statistics on both sides.
    assert len(frechet_inputs) == 2
    assert main(["fid", "-m", str(run / "model.safetensors"), "--data", str(data), "--n", "8", "--json",
                 "--workers", "0", "--no-cache"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["value"] == pytest.approx(fids[-1]["value"], rel=1e-9)
    for ours, cli in zip(frechet_inputs[1], frechet_inputs[2]):
        np.testing.assert_allclose(ours, cli, rtol=1e-9, atol=1e-9)
    # (and not trivially: the evaluation at 16 samples, during the fade, had other generated statistics)
    assert not np.allclose(frechet_inputs[0][0], frechet_inputs[1][0])

    # a longer run resumes and takes the real statistics from the cache
    longer = [a if a != "32" or args[i - 1] != "--duration" else "48" for i, a in enumerate(args)]
    assert main(longer) == 0
    capsys.readouterr()
    last = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()][-1]
    assert last["metric"] == "fid" and last["samples"] == 48 and last["data"]["from_cache"] is True


def test_missing_inception_weights_stop_the_run_before_it_trains(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AUTOMOD_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    def offline(*_a, **_k):
        raise OSError("network unreachable")

    monkeypatch.setattr("automod_cli.metrics.weights.download", offline)
    data = write_random_images(tmp_path / "data", 4, 8, seed=4)
    code = main(["train", str(data), "--out", str(tmp_path / "run"), "--preset", "toy32", "--resolution", "8",
                 "--width", "0.015625", "--latent-dim", "16", "--duration", "16", "--batch-size", "8", "--workers",
                 "0", "--device", "cpu", "--metrics", "fid"])
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert "weights not found and not downloadable (download failed: network unreachable)" in err[-1]
    assert not (tmp_path / "run" / "state").exists() and not (tmp_path / "run" / "train.lock").exists()
