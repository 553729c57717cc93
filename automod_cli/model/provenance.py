"""What a model's provenance says about it: what it was trained on, whether its training reached the
resolution the file decodes at, and whether it suits photos aligned with ``--align``.

Read from what the writers already record: the trainer (``preset``, ``data``, ``trained_phase``,
``trained_resolution``, ``alpha``, ``init_from``), the converter (``phase``, ``alpha``,
``converted_resolution``) and ``automod pull`` (``trained_on``, ``domain``, ``face_alignment``,
``released_resolution``). Nothing here rewrites a model file.
"""

from __future__ import annotations

from typing import Any

TOY_PRESETS = ("toy32", "toy64")
PULL_HINT = "'automod pull ffhq256' (then -m ffhq256; 'automod pull --list' shows the others)"


def _chain(prov: dict[str, Any]):
    """The provenance and those of the models it was fine-tuned from (``init_from``), newest first."""
    seen = 0
    while isinstance(prov, dict) and seen < 32:
        yield prov
        prov = (prov.get("init_from") or {}).get("provenance")
        seen += 1


def is_toy_model(prov: dict[str, Any]) -> bool:
    """Trained (or fine-tuned from a model trained) with a toy-face preset."""
    return any(p.get("preset") in TOY_PRESETS for p in _chain(prov))


def trained_on(prov: dict[str, Any]) -> str | None:
    """One line saying what the model was trained on, or None when its provenance does not say."""
    if prov.get("trained_on"):
        return str(prov["trained_on"])
    if is_toy_model(prov):
        preset = next(p.get("preset") for p in _chain(prov) if p.get("preset") in TOY_PRESETS)
        return f"cartoon toy faces drawn by 'automod data toyfaces' (preset {preset}), not photos"
    if prov.get("data"):
        return f"the images in {prov['data']}" + (f" (preset {prov['preset']})" if prov.get("preset") else "")
    return None


def incomplete_training(prov: dict[str, Any], resolution: int) -> str | None:
    """Why a model decoding at ``resolution`` is a snapshot of unfinished training, or None if it is not."""
    trained = prov.get("trained_resolution")
    alpha = prov.get("alpha")
    if isinstance(trained, int) and trained < resolution:
        return (f"a snapshot taken at {trained}² of a {resolution}² model: training had not reached its top "
                f"resolution, so the blocks above {trained}² are untrained and the outputs are not meaningful")
    if isinstance(trained, int) and isinstance(alpha, (int, float)) and alpha < 1 and trained == resolution:
        return (f"a snapshot taken while the {resolution}² block was still fading in (α = {alpha:g}): training "
                "had not finished its top resolution")
    phase = prov.get("phase")
    if isinstance(phase, int) and "converted_resolution" in prov:  # a converted reference checkpoint
        reached = 4 * 2 ** phase
        released = prov.get("released_resolution")
        if isinstance(released, int) and reached < released:
            return f"the checkpoint stopped at {reached}² (phase {phase}); the released model is {released}²"
        if isinstance(alpha, (int, float)) and alpha < 1 and resolution == reached:
            return (f"the checkpoint was saved while its {reached}² block was fading in (α = {alpha:g}); "
                    "the converted model decodes at α = 1")
    return None


def align_warning(prov: dict[str, Any]) -> str | None:
    """A warning for faces aligned from photos (``--align``) given to a model that does not know them."""
    if is_toy_model(prov):
        return ("this model knows only cartoon toy faces (automod data toyfaces), not photos: an aligned photo "
                "comes back as a cartoon blob. For photos use a model trained on real faces: " + PULL_HINT)
    domain = prov.get("domain")
    if domain and domain != "faces":
        return (f"this model was trained on {trained_on(prov) or domain}, not on faces; --align crops faces "
                "for face models: " + PULL_HINT)
    if prov.get("face_alignment") == "celebahq":
        return ("this model was trained on CelebA-HQ crops, framed differently from the FFHQ crops --align "
                "makes; expect weaker results (the reference recommends ffhq512 for editing faces)")
    return None
