"""Verbs at data-set scale: inputs streamed in batches by worker processes, bounded memory, progress,
grids only for small sets, bf16, summarised crop warnings."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch
from PIL import Image

from automod_cli.io.images import read_image
from automod_cli.model import Automodulator
from conftest import run_cli, write_random_images


@pytest.fixture
def counted_reads(monkeypatch):
    """Counts every image opened (in this process and in forked DataLoader workers alike)."""
    count = multiprocessing.get_context("fork").Value("i", 0)
    real_open = Image.open

    def counting_open(fp, *args, **kwargs):
        with count.get_lock():
            count.value += 1
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    return count


@pytest.fixture
def encode_calls(monkeypatch, counted_reads):
    """Records, at every encoder call, how many images had been read and how many were encoded before."""
    calls: list[tuple[int, int]] = []  # (images read so far, images in this call)
    real_encode = Automodulator.encode

    def recording_encode(self, images, *args, **kwargs):
        calls.append((counted_reads.value, images.shape[0]))
        return real_encode(self, images, *args, **kwargs)

    monkeypatch.setattr(Automodulator, "encode", recording_encode)
    return calls


def _encoded_before(calls, k):
    return sum(n for _, n in calls[:k])


def test_encode_streams_a_folder_larger_than_the_batch_in_bounded_memory(model_file, tmp_path, encode_calls):
    folder = write_random_images(tmp_path / "many", 40, 32, seed=1)
    lat = tmp_path / "lat.npz"
    batch, workers = 4, 2
    assert run_cli("encode", folder, "-m", model_file, "-o", lat, "-b", batch, "--workers", workers) == 0
    # Read ahead at most: each worker's prefetched batches, the batch being encoded and one in transit.
    bound = batch * (workers * 2 + 2)
    assert len(encode_calls) == 40 // batch
    for k, (read, n) in enumerate(encode_calls):
        assert n <= batch
        assert read - _encoded_before(encode_calls, k) <= bound, (k, read)
    # The codes are those of the images, in the inputs' order.
    with np.load(lat) as z:
        codes, names = torch.from_numpy(z["codes"]), list(z["names"])
    assert names == [f"{i:02d}" for i in range(40)]
    model = Automodulator.load(model_file)
    expected = model.encode(torch.stack([read_image(folder / f"{i:02d}.png", 32) for i in (0, 17, 39)]))
    assert torch.allclose(codes[[0, 17, 39]], expected, atol=1e-5)


def test_reconstruct_streams_without_workers_too(model_file, tmp_path, encode_calls):
    folder = write_random_images(tmp_path / "many", 12, 32, seed=2)
    out = tmp_path / "rec"
    assert run_cli("reconstruct", folder, "-m", model_file, "-o", out, "-b", 4, "--workers", 0) == 0
    assert len(encode_calls) == 3
    for k, (read, _) in enumerate(encode_calls):
        assert read - _encoded_before(encode_calls, k) <= 4  # in-process reading: one batch at a time
    assert len(list(out.glob("??.png"))) == 12


def test_bad_files_among_many_are_listed_and_the_good_ones_processed(model_file, tmp_path, capsys):
    folder = write_random_images(tmp_path / "many", 10, 32, seed=3)
    (folder / "03.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "08.png").write_text("not an image")
    out = tmp_path / "rec"
    assert run_cli("reconstruct", folder, "-m", model_file, "-o", out, "-b", 3, "--workers", 2) == 1
    assert sorted(p.stem for p in out.glob("??.png")) == [f"{i:02d}" for i in range(10) if i not in (3, 8)]
    err = capsys.readouterr().err
    assert "2 inputs skipped" in err and "03.png" in err and "08.png" in err and "Traceback" not in err


def test_all_inputs_bad_is_an_error(model_file, tmp_path, capsys):
    (tmp_path / "x.png").write_text("junk")
    assert run_cli("encode", tmp_path / "x.png", "-m", model_file, "-o", tmp_path / "l.safetensors") == 2
    assert "none of the inputs could be used" in capsys.readouterr().err
    assert not (tmp_path / "l.safetensors").exists()


def test_comparison_grid_only_for_small_sets_or_when_asked(model_file, tmp_path, monkeypatch):
    from automod_cli import pipeline

    monkeypatch.setattr(pipeline, "GRID_MAX", 4)
    folder = write_random_images(tmp_path / "six", 6, 32, seed=4)
    assert run_cli("reconstruct", folder, "-m", model_file, "-o", tmp_path / "a") == 0
    assert not (tmp_path / "a" / "comparison.png").exists() and len(list((tmp_path / "a").iterdir())) == 6
    assert run_cli("reconstruct", folder, "-m", model_file, "-o", tmp_path / "b", "--grid") == 0
    # The first 4 inputs as (input, output) pairs, 8 per row: one row of 8 cells.
    assert Image.open(tmp_path / "b" / "comparison.png").size == (8 * 34 + 2, 34 + 2)
    assert run_cli("reconstruct", folder / "00.png", "-m", model_file, "-o", tmp_path / "c") == 0
    assert (tmp_path / "c" / "comparison.png").exists()
    assert run_cli("sample", "--n", 6, "-m", model_file, "-o", tmp_path / "s") == 0
    assert not (tmp_path / "s" / "grid.png").exists()


def test_progress_and_summary_lines(model_file, tmp_path, capsys):
    folder = write_random_images(tmp_path / "five", 5, 32, seed=5)
    assert run_cli("reconstruct", folder, "-m", model_file, "-o", tmp_path / "a", "--progress", "-b", 2) == 0
    err = capsys.readouterr().err
    assert "reconstruct: 5/5 images" in err and "ETA" in err  # plain progress lines: stderr is not a terminal
    assert "wrote 5 reconstructions" in err and "images/s" in err
    assert run_cli("reconstruct", folder, "-m", model_file, "-o", tmp_path / "b") == 0
    err = capsys.readouterr().err
    assert "ETA" not in err and "images/s" in err  # quiet by default when not a terminal; the summary stays


def test_precision_bf16_changes_little_and_unknown_precision_is_refused(model_file, image_dir, tmp_path, capsys):
    args = ["reconstruct", image_dir / "face0.png", "-m", model_file]
    assert run_cli(*args, "-o", tmp_path / "fp32") == 0
    assert run_cli(*args, "-o", tmp_path / "bf16", "--precision", "bf16") == 0
    a = np.asarray(Image.open(tmp_path / "fp32" / "face0.png"), dtype=np.float64)
    b = np.asarray(Image.open(tmp_path / "bf16" / "face0.png"), dtype=np.float64)
    assert np.abs(a - b).mean() < 4.0  # in 8-bit steps
    assert run_cli(*args, "-o", tmp_path / "x", "--precision", "fp16") == 2
    assert "fp32 or bf16" in capsys.readouterr().err


def test_same_size_crops_give_one_summary_warning(model_file, tmp_path, capsys):
    folder = tmp_path / "wide"
    folder.mkdir()
    rng = np.random.default_rng(6)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(folder / f"w{i:02d}.png")
    assert run_cli("reconstruct", folder, "-m", model_file, "-o", tmp_path / "r", "-b", 8) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "20 inputs were centre-cropped from 40×32 to 32×32" in warnings[0]


def test_decode_and_sample_stream_in_batches(model_file, image_dir, tmp_path, monkeypatch):
    lat = tmp_path / "lat.safetensors"
    assert run_cli("encode", image_dir, "-m", model_file, "-o", lat) == 0
    sizes = []
    real_decode = Automodulator.decode

    def recording_decode(self, codes, *args, **kwargs):
        sizes.append(codes.shape[0])
        return real_decode(self, codes, *args, **kwargs)

    monkeypatch.setattr(Automodulator, "decode", recording_decode)
    assert run_cli("decode", lat, "-m", model_file, "-o", tmp_path / "d", "-b", 4) == 0
    assert sizes == [4, 2] and len(list((tmp_path / "d").iterdir())) == 6
    sizes.clear()
    assert run_cli("sample", "--n", 7, "-m", model_file, "-o", tmp_path / "s", "-b", 3) == 0
    assert sizes == [3, 3, 1]


def test_existing_outputs_are_refused_before_any_work(model_file, tmp_path, capsys):
    folder = write_random_images(tmp_path / "many", 8, 32, seed=7)
    out = tmp_path / "rec"
    out.mkdir()
    (out / "05.png").write_bytes(b"precious")
    assert run_cli("reconstruct", folder, "-m", model_file, "-o", out, "-b", 2) == 2
    assert "05.png: exists already" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["05.png"] and (out / "05.png").read_bytes() == b"precious"


def test_a_streamed_run_computes_the_run_time_weights_once(model_file, tmp_path, monkeypatch, encode_calls):
    from automod_cli.model.layers import SpectralNormConv2d

    calls = []
    real = SpectralNormConv2d.normalized_weight

    def counting(self):
        calls.append(self)
        return real(self)

    monkeypatch.setattr(SpectralNormConv2d, "normalized_weight", counting)
    folder = write_random_images(tmp_path / "twelve", 12, 32, seed=8)
    assert run_cli("encode", folder, "-m", model_file, "-o", tmp_path / "l.npy", "-b", 4, "--workers", 0) == 0
    convs = [m for m in Automodulator.load(model_file).encoder.modules() if isinstance(m, SpectralNormConv2d)]
    assert len(encode_calls) == 3 and len(calls) == len(convs)  # once per conv for the run, not per batch


def test_the_allocator_keeps_freed_memory_on_glibc():
    import platform

    from automod_cli.streaming import keep_freed_memory

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("the setting is glibc's")
    assert keep_freed_memory() is True and keep_freed_memory() is True  # accepted, and once is enough
