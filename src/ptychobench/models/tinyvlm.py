"""``tiny-vlm``: an offline vision-language model assembled the LLaVA way.

No vision-language model ships offline, so this one is put together from two shipped
parts: the EfficientNet-Lite0 image encoder (ImageNet weights, frozen) and
SmolLM2-135M-Instruct, joined by a two-layer MLP projector that maps each cell of the
encoder's last 7x7 feature map to one token in the language model's embedding space.
Each image in a conversation becomes ``image_grid**2`` embedding slots, marked in the
text by an ``<image>`` token that is added to the tokenizer but never embedded nor
generated (the language model's vocabulary is unchanged, so its LoRA adapters fit).

The projector starts from a fixed random initialisation and has had no image-text
training: zero-shot answers are expected to be poor and are reported as they are.
Fine-tuning trains the projector and LoRA adapters (``lora_config``); the result is a
peft adapter folder that ``load_backend("tiny-vlm", adapter=DIR)`` loads.

The model and processor quack like a transformers VLM and its processor, so the same
``HFBackend`` (chat rendering, batching, decoding) runs it as it runs a hub VLM.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import BatchFeature, PreTrainedConfig, PreTrainedModel

from .assets import (
    efficientnet_lite0_weights,
    file_sha256,
    load_efficientnet_lite0,
    smollm2_gguf_path,
    smollm2_transformers_dir,
)
from .chat import load_image
from .collate import conversation_batch

IMAGE_TOKEN = "<image>"
CONFIG_FILE = "tinyvlm_config.json"
#: Encoder feature maps kept in memory (each 1280x7x7 floats, 250 kB at float32).
FEATURE_CACHE_SIZE = 512
#: Bumped when the architecture or preprocessing changes, so stored predictions re-key.
TINY_VLM_VERSION = 1

DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
# SmolLM2's ChatML template, extended to content-part lists with image placeholders; parts
# are joined by newlines as the text-only rendering joins text parts.
# (transformers compiles templates with trim_blocks: a newline right after a block tag is
# dropped, so the part separator is written as an expression)
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\n" + DEFAULT_SYSTEM + "<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if not loop.first %}{{ '\\n' }}{% endif %}"
    "{% if part['type'] == 'image' %}" + IMAGE_TOKEN + "{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class TinyVLMConfig(PreTrainedConfig):
    model_type = "ptychobench-tiny-vlm"

    def __init__(
        self,
        vision_model: str = "efficientnet-lite0",
        vision_hidden_size: int = 1280,
        image_size: int = 224,
        image_grid: int = 7,
        text_hidden_size: int = 576,
        projector_seed: int = 0,
        image_token: str = IMAGE_TOKEN,
        image_token_id: int | None = None,
        **kwargs: Any,
    ):
        self.vision_model = vision_model
        self.vision_hidden_size = vision_hidden_size
        self.image_size = image_size
        self.image_grid = image_grid
        self.text_hidden_size = text_hidden_size
        self.projector_seed = projector_seed
        self.image_token = image_token
        self.image_token_id = image_token_id
        super().__init__(**kwargs)

    @property
    def image_tokens(self) -> int:
        return self.image_grid * self.image_grid


# ------------------------------------------------------------------------------ processor
class TinyVLMProcessor:
    """Conversations -> model inputs, with a hub processor's surface: ``tokenizer``,
    ``apply_chat_template``, ``__call__(text=, images=)``, ``batch_decode``; plus
    ``collate`` for training (labels on the assistant turns only)."""

    def __init__(self, tokenizer: Any, config: TinyVLMConfig):
        self.tokenizer = tokenizer
        self.config = config
        self.image_token = config.image_token
        if self.image_token not in tokenizer.get_vocab():
            tokenizer.add_tokens([self.image_token], special_tokens=True)
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        config.image_token_id = self.image_token_id
        self.chat_template = CHAT_TEMPLATE
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    # -- text
    def apply_chat_template(
        self, conversation: list[dict], add_generation_prompt: bool = False, tokenize: bool = False, **kwargs: Any
    ) -> str:
        if tokenize:
            raise NotImplementedError("render with tokenize=False, then call the processor")
        return self.tokenizer.apply_chat_template(
            conversation, chat_template=self.chat_template, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def expand_image_tokens(self, text: str) -> str:
        return text.replace(self.image_token, self.image_token * self.config.image_tokens)

    # -- images
    def preprocess_image(self, image: Any) -> torch.Tensor:
        """EfficientNet-Lite preprocessing: RGB at 224x224, (x - 127) / 128."""
        from PIL import Image

        if not isinstance(image, Image.Image):
            image = load_image(image)
        size = self.config.image_size
        image = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(size, size, 3)
        return (x.permute(2, 0, 1).float() - 127.0) / 128.0

    def _pixel_values(self, texts: list[str], images: list[list[Any]] | None) -> torch.Tensor | None:
        images = images or [[] for _ in texts]
        if len(images) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(images)} image lists")
        flat: list[torch.Tensor] = []
        for i, (text, ims) in enumerate(zip(texts, images)):
            ims = ims if isinstance(ims, (list, tuple)) else [ims]
            if text.count(self.image_token) != len(ims):
                raise ValueError(
                    f"text {i} has {text.count(self.image_token)} {self.image_token} placeholders but {len(ims)} images"
                )
            flat.extend(self.preprocess_image(im) for im in ims)
        return torch.stack(flat) if flat else None

    def __call__(
        self,
        text: str | list[str] | None = None,
        images: Any = None,
        padding: bool | str = True,
        return_tensors: str = "pt",
        add_special_tokens: bool = False,
        **kwargs: Any,
    ) -> BatchFeature:
        texts = [text] if isinstance(text, str) else list(text or [])
        if images is not None and len(texts) == 1 and not isinstance(images[0], (list, tuple)):
            images = [images]
        pixel_values = self._pixel_values(texts, images)
        enc = self.tokenizer(
            [self.expand_image_tokens(t) for t in texts],
            padding=padding,
            return_tensors=return_tensors,
            add_special_tokens=add_special_tokens,
            **kwargs,
        )
        data = dict(enc)
        if pixel_values is not None:
            data["pixel_values"] = pixel_values
        return BatchFeature(data=data)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    # -- training
    def collate(
        self, conversations: list[list[dict]], *, loss_on: str = "all", max_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """A training batch from conversations in the released format (last turn: the
        assistant's answer): input_ids, attention_mask, pixel_values, labels. Labels are
        -100 everywhere except the assistant turns' tokens (``loss_on="all"``) or the last
        assistant turn (``"last"``), each with its closing ``<|im_end|>``. Right padding."""
        return conversation_batch(self, conversations, loss_on=loss_on, max_length=max_length)

    # -- persistence (the processor is rebuilt from the shipped tokenizer; only the config varies)
    def save_pretrained(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / CONFIG_FILE).write_text(json.dumps(_config_dict(self.config), indent=2))


def _config_dict(config: TinyVLMConfig) -> dict[str, Any]:
    keys = (
        "vision_model",
        "vision_hidden_size",
        "image_size",
        "image_grid",
        "text_hidden_size",
        "projector_seed",
        "image_token",
    )
    return {"tiny_vlm_version": TINY_VLM_VERSION, **{k: getattr(config, k) for k in keys}}


# ------------------------------------------------------------------------------ model
class Projector(nn.Module):
    """LLaVA-1.5's two-layer MLP, with a LayerNorm on the encoder features (ReLU6 outputs
    of EfficientNet are on another scale than token embeddings)."""

    def __init__(self, vision_hidden: int, text_hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(vision_hidden)
        self.fc1 = nn.Linear(vision_hidden, text_hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(text_hidden, text_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyVLMBackbone(nn.Module):
    """Encoder, projector and the language model's transformer (no head): ids and images
    in, hidden states out. What trainers call the base model (TRL's fused LM head runs
    this, then the head, without materialising all logits)."""

    # the encoder and the language model are duck-typed (EfficientNet's extract_features, a
    # transformers decoder's get_input_embeddings): Any, where torch's stubs would say Module
    def __init__(self, config: TinyVLMConfig, vision_tower: Any, projector: Any, language_model: Any):
        super().__init__()
        self.config = config
        self.vision_tower = vision_tower
        self.projector = projector
        self.language_model = language_model
        self._features: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()

    def vision_trainable(self) -> bool:
        return any(p.requires_grad for p in self.vision_tower.parameters())

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's feature maps, each image's computed once and kept (an image
        recurs as a demonstration in many prompts and in every cell of a run; the projector,
        which an adapter changes, runs on the kept features each time). Each image is encoded
        alone, so its features do not depend on which images share its batch. Computed
        afresh while the encoder trains."""
        dtype = self.projector.fc1.weight.dtype
        if self.vision_trainable() and torch.is_grad_enabled():
            return self.vision_tower.extract_features(pixel_values.to(dtype))
        out = []
        with torch.no_grad():
            for x in pixel_values.to(dtype):
                # the raw bytes, as uint8: numpy has no bfloat16, the default's CPU dtype
                raw = x.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
                key = (str(dtype), hashlib.sha1(raw).hexdigest())
                feats = self._features.pop(key, None)
                if feats is None:
                    feats = self.vision_tower.extract_features(x[None])[0]
                self._features[key] = feats  # most recently used last
                while len(self._features) > FEATURE_CACHE_SIZE:
                    self._features.popitem(last=False)
                out.append(feats)
        return torch.stack(out)

    def grid_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(n_images, 3, 224, 224) -> (n_images, image_grid**2, vision_hidden): the
        encoder's feature map on the token grid, what the projector maps to tokens."""
        feats = self.encode_images(pixel_values)
        g = self.config.image_grid
        if feats.shape[-1] != g:
            feats = nn.functional.adaptive_avg_pool2d(feats, g)
        return feats.flatten(2).transpose(1, 2)

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(n_images, 3, 224, 224) -> (n_images, image_grid**2, text_hidden)."""
        return self.projector(self.grid_features(pixel_values))

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        if self.config.image_token_id is None:
            raise ValueError("TinyVLMConfig.image_token_id is unset; build the model with load_tiny_vlm")
        image_mask = input_ids.eq(self.config.image_token_id)
        embeds = self.language_model.get_input_embeddings()(input_ids.masked_fill(image_mask, 0))
        n_slots = int(image_mask.sum())
        if n_slots == 0:
            return embeds
        if pixel_values is None:
            raise ValueError(f"the input has {n_slots} image slots but no pixel_values")
        feats = self.image_features(pixel_values).reshape(-1, embeds.shape[-1]).to(embeds.dtype)
        if feats.shape[0] != n_slots:
            raise ValueError(f"{feats.shape[0]} image feature tokens for {n_slots} image slots")
        return embeds.masked_scatter(image_mask.unsqueeze(-1), feats)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("TinyVLM needs input_ids or inputs_embeds")
            inputs_embeds = self.embed(input_ids, pixel_values)
        return self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)


class TinyVLM(PreTrainedModel):
    """Image encoder + projector + causal language model, laid out as transformers lays
    out its VLMs (``model`` = backbone, ``lm_head``). ``forward`` takes ``labels`` and
    returns the loss; ``generate`` returns the prompt ids followed by the new ids, as a
    transformers VLM does. A ``PreTrainedModel`` so that trainers (TRL's SFTTrainer) and
    peft treat it as one; it is built from its parts by ``load_tiny_vlm``."""

    config_class = TinyVLMConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _causal_lm: Any  # set in __init__ through __dict__, outside the module registry

    def __init__(self, config: TinyVLMConfig, language_model: Any, vision_tower: Any):
        super().__init__(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.projector_seed)
            projector = Projector(config.vision_hidden_size, config.text_hidden_size)
            # start the projected features at the scale of the token embeddings
            std = float(language_model.get_input_embeddings().weight.detach().std())
            nn.init.normal_(projector.fc2.weight, std=std / config.text_hidden_size**0.5 * 2)
            nn.init.zeros_(projector.fc2.bias)
        self.model = TinyVLMBackbone(config, vision_tower, projector, language_model.model)
        self.lm_head = language_model.get_output_embeddings()
        # The causal LM shares its modules with ``model`` and ``lm_head`` (LoRA layers that
        # peft puts into them are seen by both); it is kept unregistered, for ``generate``.
        self.__dict__["_causal_lm"] = language_model
        for p in vision_tower.parameters():
            p.requires_grad_(False)
        vision_tower.eval()
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Every part arrives initialised (pretrained, or the seeded projector)."""

    # -- the transformers surface the backend and trainers use
    @property
    def generation_config(self) -> Any:
        return self._causal_lm.generation_config

    @generation_config.setter
    def generation_config(self, value: Any) -> None:
        pass  # PreTrainedModel.__init__ sets one; the language model's is the one used

    @property
    def projector(self) -> nn.Module:
        return self.model.projector

    @property
    def vision_tower(self) -> nn.Module:
        return self.model.vision_tower

    def get_input_embeddings(self) -> nn.Module:
        return self.model.language_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def train(self, mode: bool = True) -> TinyVLM:
        super().train(mode)
        if not self.model.vision_trainable():
            self.model.vision_tower.eval()  # frozen BatchNorm must not update its running statistics
        return self

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        num_items_in_batch: Any = None,
        **kwargs: Any,
    ) -> Any:
        from transformers.loss.loss_utils import ForCausalLMLoss
        from transformers.modeling_outputs import CausalLMOutputWithPast

        out = self.model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values, **kwargs)
        logits = self.lm_head(out.last_hidden_state)
        loss = None
        if labels is not None:
            loss = ForCausalLMLoss(logits, labels, vocab_size=logits.shape[-1], num_items_in_batch=num_items_in_batch)
        return CausalLMOutputWithPast(loss=loss, logits=logits)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        embeds = self.model.embed(input_ids, pixel_values)
        new = self._causal_lm.generate(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)


# ------------------------------------------------------------------------------ building
def read_adapter_config(adapter: str | Path | None) -> dict[str, Any]:
    if adapter is None or not (Path(adapter) / CONFIG_FILE).is_file():
        return {}
    cfg = json.loads((Path(adapter) / CONFIG_FILE).read_text())
    cfg.pop("tiny_vlm_version", None)
    return cfg


def load_tiny_vlm(
    adapter: str | Path | None = None,
    *,
    device: str = "auto",
    dtype: Any = "auto",
    for_training: bool = False,
    **config_overrides: Any,
) -> tuple[Any, TinyVLMProcessor]:
    """(model, processor) for tiny-vlm; with ``adapter``, a folder written by
    ``save_adapter`` (or any peft ``save_pretrained`` of a ``get_peft_model`` of it) is
    loaded on top, trainable when ``for_training``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .hf import pick_device, pick_dtype

    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    config = TinyVLMConfig(**{**read_adapter_config(adapter), **config_overrides})
    lm_dir = smollm2_transformers_dir()
    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    tokenizer.padding_side = "left"
    processor = TinyVLMProcessor(tokenizer, config)
    language_model = AutoModelForCausalLM.from_pretrained(lm_dir, dtype=torch_dtype)
    vision = load_efficientnet_lite0()
    model: Any = TinyVLM(config, language_model, vision)
    model = model.to(device=device, dtype=torch_dtype)
    if adapter is not None:
        adapter = Path(adapter)
        if not (adapter / "adapter_config.json").is_file():
            raise FileNotFoundError(
                f"{adapter}: no adapter_config.json; expected a folder written by "
                "tinyvlm.save_adapter or PeftModel.save_pretrained"
            )
        from peft import PeftModel

        from .hf import quiet_peft

        with quiet_peft():
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=for_training)
    if not for_training:
        model.eval()
    return model, processor


def lora_config(r: int = 16, alpha: int = 16, dropout: float = 0.0, train_projector: bool = True) -> Any:
    """The paper's LoRA settings on the language model's attention and MLP projections,
    with the projector trained in full and saved with the adapter. (The encoder's layers
    are convolutions; it stays frozen here.)"""
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        bias="none",
        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
        modules_to_save=["projector"] if train_projector else None,
    )


def save_adapter(model: Any, directory: str | Path) -> Path:
    """Write a trained peft-wrapped tiny-vlm (LoRA + projector) and its config."""
    directory = Path(directory)
    if not hasattr(model, "peft_config"):
        raise TypeError(
            "save_adapter expects a peft model: wrap tiny-vlm with peft.get_peft_model(model, "
            "tinyvlm.lora_config()) before training"
        )
    model.save_pretrained(str(directory))
    base = model.get_base_model()
    (directory / CONFIG_FILE).write_text(json.dumps(_config_dict(base.config), indent=2))
    return directory


def tiny_vlm_revision(config: TinyVLMConfig | None = None) -> str:
    """What the zero-shot model is made of, for the fingerprint."""
    config = config or TinyVLMConfig()
    parts = [
        str(TINY_VLM_VERSION),
        file_sha256(smollm2_gguf_path())[:12],
        file_sha256(efficientnet_lite0_weights())[:12],
        json.dumps(_config_dict(config), sort_keys=True),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
