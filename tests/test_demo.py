"""`automod demo` end to end with a tiny training budget and a tiny gallery model."""

from __future__ import annotations

import torch

from conftest import run_cli


def test_demo_trains_and_writes_a_gallery(tiny_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_model.set_attribute("smile", torch.randn(64) * 0.1, scales="middle")
    tiny_model.set_attribute("glasses", torch.randn(64) * 0.1, scales="coarse")
    model = tiny_model.save(tmp_path / "gallery-model.safetensors")
    (tmp_path / "automod-demo").mkdir()  # an earlier demo: must not be touched
    assert run_cli("demo", "--train-samples", "96", "-m", model) == 0  # --device auto, as a newcomer runs it
    out = tmp_path / "automod-demo-2"
    assert capsys.readouterr().out.strip() == str(out / "gallery")
    gallery = out / "gallery"
    names = {p.name for p in gallery.iterdir()}
    for expected in ("index.html", "reconstructions.png", "mix_coarse.png", "mix_middle.png", "mix_fine.png",
                     "interpolation.png", "interpolation_square.png", "edit_smile.png", "edit_glasses.png",
                     "samples.png", "conditional_coarse.png", "demo_trained_reconstructions.png"):
        assert expected in names
    html = (gallery / "index.html").read_text()
    assert all(f'src="{n}"' in html for n in names if n.endswith(".png"))
    # The trained panel names what was trained, for how long and how far: 96 samples stay at 4² of 32².
    assert "demo32 after 96 samples" in html and "only 4² of its 32²" in html and "dB over 64" in html
    # The mixing figures carry labels saying which input drives which scales (a strip above the grid).
    from PIL import Image
    for group in ("coarse", "middle", "fine"):
        with Image.open(gallery / f"mix_{group}.png") as im:
            assert im.height > im.width  # a square 5×5 grid under its label strip
    assert "the top image B_j drives the coarse scales (layout" in html
    assert (out / "train-run" / "model.safetensors").exists() and (out / "latents.safetensors").exists()
    assert list((tmp_path / "automod-demo").iterdir()) == []
