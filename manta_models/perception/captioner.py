"""One-sentence captions of frames with an image-to-text model from a local folder (never a download).

Two kinds of model are driven: captioners that need only the image (BLIP, BLIP-2, GIT, a vision encoder-decoder),
and chat VLMs whose processor has a chat template (LLaVA, SmolVLM, ...), which are asked ``prompt`` about the
image. The folder is one written by ``save_pretrained``; it loads with ``local_files_only=True``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from manta_models.packaged import check_model_dir, load_model, model_class
from manta_models.packaged import ModelError
from manta_models.perception.vision import check_frames

log = logging.getLogger("manta.captioner")

# Frames per generate() call. Generation is the slow part and its cost grows with the batch on a CPU, so a
# small batch keeps one call short enough not to stall a stream's ingest loop.
BATCH = 4
PROMPT = "Describe this image in one sentence."


def _auto_class():
    # transformers 5 folded AutoModelForVision2Seq into AutoModelForImageTextToText; 4.x has both names, and
    # BLIP sits in both mappings there.
    import transformers

    cls = getattr(transformers, "AutoModelForImageTextToText", None)
    return cls if cls is not None else transformers.AutoModelForVision2Seq


class Captioner:
    """Short stripped captions, one per frame, from a local image-to-text model."""

    def __init__(self, path: str | Path, threads: int = 1, device: str = "cpu", prompt: str = PROMPT):
        self.path = check_model_dir(path, "captioning model")
        import torch
        from transformers import AutoProcessor, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = device
        self.prompt = prompt
        auto = _auto_class()
        # Checked before the weights load, so a wrong folder fails fast and cheaply.
        model_class(self.path, auto._model_mapping, "captioning (image-to-text) model")
        self.model = load_model(auto, self.path, "captioning model", device)
        try:
            self.processor = AutoProcessor.from_pretrained(self.path, local_files_only=True)
            # A bare vision encoder-decoder folder has no processor class: AutoProcessor gives back just the
            # image processor, and the tokenizer that decodes the output is loaded on its own.
            self.tokenizer = getattr(self.processor, "tokenizer", None)
            if self.tokenizer is None:
                self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot load the processor or tokenizer in {self.path}: {exc}") from exc
        self._chat = getattr(self.processor, "chat_template", None) is not None
        if self._chat:
            # Decoder-only VLMs continue the last token of each row, so a batch must be padded on the left.
            self.tokenizer.padding_side = "left"
        log.info("loaded %s (%s) from %s", type(self.model).__name__,
                 "chat prompt" if self._chat else "image only", self.path)

    def caption(self, frames: list[np.ndarray], max_new_tokens: int = 30) -> list[str]:
        """frames: H x W x 3 uint8 RGB arrays of any size. Returns one stripped caption per frame."""
        check_frames(frames)
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive int, not {max_new_tokens!r}")
        out: list[str] = []
        for start in range(0, len(frames), BATCH):
            out.extend(self._caption_batch(frames[start:start + BATCH], max_new_tokens))
        return out

    def _caption_batch(self, frames: list[np.ndarray], max_new_tokens: int) -> list[str]:
        from PIL import Image

        # PIL images, not arrays: processors guess the channel axis of an array and can guess wrong.
        images = [Image.fromarray(f) for f in frames]
        if self._chat:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            inputs = self.processor(images=images, text=[text] * len(images), padding=True, return_tensors="pt")
        else:
            # The whole processor, not just its image processor: BLIP-2's also inserts the image query tokens.
            inputs = self.processor(images=images, return_tensors="pt")
        inputs = inputs.to(self.device)
        with self._torch.inference_mode():
            # Greedy whatever the folder's generation_config says: the same frame should always index the same.
            ids = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        # Decoder-only models echo the prompt before the new tokens, others (BLIP-2 in some versions) return
        # only the new ones: cut the prompt off only where it is really there.
        prompt = inputs.get("input_ids")
        if prompt is not None and ids.shape[1] >= prompt.shape[1] and \
                self._torch.equal(ids[:, :prompt.shape[1]].cpu(), prompt.cpu()):
            ids = ids[:, prompt.shape[1]:]
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
