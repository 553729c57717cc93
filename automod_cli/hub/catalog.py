"""The reference implementation's released models and attribute directions, and where each fact is from.

Checkpoints: Zenodo record 4298894, one ``<iteration>_state.pth`` per model. File, iteration, decoder
variant and input preprocessing are the reference's ``hubconf.py`` (AaltoVision/automodulator at
db683ed): ``ffhq512`` 42420000 with ``transform_key='ffhq512'`` (``Session.tf`` resizes and centre-crops
to 512, every other model to 256: pioneer/session.py:93-101), ``celebahq256`` 31877148 with
``arch='small'``, ``ffhq256`` 34740000, ``lsuncars256`` 32057140, ``lsunbedrooms256`` 27574284 (the
large decoder). Training data: the reference README ("Datasets": FFHQ identities 1-60k for training,
CelebA-HQ with its 27k/3k split, LSUN Bedrooms, LSUN Cars).

Attribute directions: ``pioneer/attrib/*`` in the same repository, pickled ``(1, 512)`` CUDA tensors.
* ``smile_delta512-16`` and ``smile_delta512-4`` belong to ``ffhq512``: commit 190a72d ("Updated the
  attribute vectors for the new FFHQ-512 model for both the 4-exemplar and 16-exemplar case"), and the
  reference's PyTorch Hub page (pytorch/hub, aalto_automodulator.md) loads ``smile_delta512-16`` for the
  ``ffhq512`` model ("pre-calculated ones (from 2x16 exemplars)") and applies it with
  ``zbuilder().mid(...)``, i.e. decoder blocks 2-4 (pioneer/session.py:334-336) = 16²-64²; there it adds
  0.5·δ to add a smile and subtracts 1.5·δ to remove one.
* ``smile_delta2``, ``male_delta2``, ``dark_delta2``, ``left_delta2`` came with the repository's first
  commit (ddc1760, 2020-03-30), whose README's only pre-trained models were FFHQ at 256×256 and whose
  config trains FFHQ up to phase 6 (256²; pioneer/config.py:141-143): so they go with ``ffhq256``. Which
  snapshot's encoder made them is not recorded. Scales from the paper's supplement, App. C: smile
  16²-64², male-to-female 8²-64². For ``dark`` and ``left`` the reference gives no scales, so edits use
  all scales unless ``--scales`` says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ZENODO_RECORD = "https://zenodo.org/record/4298894"
REFERENCE_COMMIT = "db683ed28e3afd8883c5ffb367dbf848dd163ede"
ATTRIBUTE_BASE_URL = f"https://raw.githubusercontent.com/AaltoVision/automodulator/{REFERENCE_COMMIT}/pioneer/attrib/"


@dataclass(frozen=True)
class AttributeSource:
    """One attribute direction file of the reference and what automod attaches it as."""

    name: str                   # the name used with --attr
    filename: str               # the reference's file name (pioneer/attrib/...)
    scales: str | None          # default scales for edits; None = all
    sha256: str | None          # of the file in the repository at REFERENCE_COMMIT
    note: str = ""
    url: str = ""

    def source_url(self) -> str:
        return self.url or ATTRIBUTE_BASE_URL + self.filename


@dataclass(frozen=True)
class ReleasedModel:
    name: str
    iteration: int
    variant: str                 # decoder channel plan: large | small
    resolution: int              # the top resolution the model was released at
    trained_on: str
    domain: str                  # faces | cars | bedrooms
    alignment: str | None        # how its training faces were cropped: ffhq | celebahq | None (not faces)
    preprocessing: str
    attributes: tuple[AttributeSource, ...] = field(default_factory=tuple)
    url: str = ""
    note: str = ""

    @property
    def filename(self) -> str:
        return f"{self.iteration}_state.pth"

    def source_url(self) -> str:
        return self.url or f"{ZENODO_RECORD}/files/{self.filename}?download=1"

    def facts(self) -> dict:
        """What goes into a pulled model's provenance."""
        return {"released_name": self.name, "released_iteration": self.iteration,
                "released_resolution": self.resolution, "trained_on": self.trained_on, "domain": self.domain,
                "face_alignment": self.alignment, "preprocessing": self.preprocessing,
                "published_at": self.source_url(), "record": ZENODO_RECORD}


_PREPROCESS_256 = "resize the shorter side to 256, centre-crop 256², scale to [-1, 1] (pioneer/session.py:93-101)"
_FFHQ = "FFHQ (Flickr-Faces-HQ, NVIDIA), training identities 1-60,000; faces aligned and cropped the FFHQ way"

_FFHQ256_ATTRS = (
    AttributeSource("smile", "smile_delta2", "16-64",
                    "09d397f08b49512538625f9dae32ca04e77196c442392f7c2bf35505c22e3dce",
                    "smile; scales from the paper's supplement, App. C"),
    AttributeSource("male", "male_delta2", "8-64",
                    "ec343351d779e74dfecdc7947a5d97bc678f06f7dbd5a08b43ead90d87f74ee4",
                    "male (a negative strength goes towards female); scales from App. C"),
    AttributeSource("dark", "dark_delta2", None,
                    "7b9480347a9442ad97fb6fd53e7de6335eda9d8ad1725db79155a2a5dc010959",
                    "the reference names it only 'dark' and gives no scales"),
    AttributeSource("left", "left_delta2", None,
                    "c3052ee2ec8fd825e121ce549b1cf48d1c784c58ac2f91f3ef70c43d13c55788",
                    "the reference names it only 'left' and gives no scales"),
)

_FFHQ512_ATTRS = (
    AttributeSource("smile", "smile_delta512-16", "16-64",
                    "f824a06bd3b7fd468ccedb2600fba9812d66b6a89af1607c66cc9bc1821fd1c7",
                    "16 exemplars each way; the reference adds 0.5·δ (or subtracts 1.5·δ) at the mid scales"),
    AttributeSource("smile4", "smile_delta512-4", "16-64",
                    "e1c47fbbe38d4a0af5f577c66e5156ef68bd7d12b65c3fe956363a8b432770e1",
                    "the same from 4 exemplars each way (noisier; the supplement's Fig. 8 setting)"),
)

RELEASED: dict[str, ReleasedModel] = {m.name: m for m in (
    ReleasedModel("ffhq256", 34740000, "large", 256, _FFHQ + ", 256²", "faces", "ffhq", _PREPROCESS_256,
                  _FFHQ256_ATTRS),
    ReleasedModel("ffhq512", 42420000, "large", 512, _FFHQ + ", 512²", "faces", "ffhq",
                  "resize the shorter side to 512, centre-crop 512², scale to [-1, 1] (transform_key "
                  "'ffhq512', pioneer/session.py:93-101)", _FFHQ512_ATTRS,
                  note="the reference's recommended model for editing faces (pytorch/hub aalto_automodulator.md)"),
    ReleasedModel("celebahq256", 31877148, "small", 256,
                  "CelebA-HQ (the reference's 27k training split), 256²; faces cropped the CelebA-HQ way, "
                  "not the FFHQ way", "faces", "celebahq", _PREPROCESS_256),
    ReleasedModel("lsuncars256", 32057140, "large", 256, "LSUN Cars, 256²", "cars", None, _PREPROCESS_256),
    ReleasedModel("lsunbedrooms256", 27574284, "large", 256, "LSUN Bedrooms, 256²", "bedrooms", None,
                  _PREPROCESS_256),
)}
