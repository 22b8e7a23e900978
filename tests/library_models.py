"""Models as timm and transformers save them, built in the test session from configs with seeded random weights
(no download), the real photographs they are checked on, and each library's own answers for a folder.

The heads are scaled so that the 5 logits spread over the photos: random weights otherwise give near-uniform
probabilities, where any preprocessing would agree.
"""

import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

CLASSES = ["heron", "kestrel", "otter", "badger", "lynx"]
SEED = 20261204


def real_photos() -> dict[str, bytes]:
    """scikit-image's photographs as JPEG and PNG files, a phone-sized JPEG, and asymmetric pictures."""
    import skimage.data

    photos: dict[str, bytes] = {}
    for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field"):
        image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        photos[f"{name}.jpg"] = _encoded(image, "JPEG", quality=90)
        if name in ("chelsea", "rocket"):
            photos[f"{name}.png"] = _encoded(image, "PNG")
    phone = Image.fromarray(skimage.data.coffee()).resize((2400, 1600), Image.Resampling.BICUBIC)
    photos["coffee-phone-sized.jpg"] = _encoded(phone, "JPEG", quality=90)
    tall = Image.new("RGB", (300, 520), (40, 180, 60))
    ImageDraw.Draw(tall).ellipse((150, 40, 290, 200), fill=(220, 40, 30))
    photos["off-centre-disc.png"] = _encoded(tall, "PNG")
    x, y = np.meshgrid(np.linspace(0, 1, 641), np.linspace(0, 1, 479))
    gradient = np.stack([x * 255, y * 120, (1 - x) * 255], axis=-1).astype(np.uint8)
    photos["odd-gradient.png"] = _encoded(Image.fromarray(gradient), "PNG")
    return photos


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _spread(head: torch.nn.Linear, scale: float) -> None:
    with torch.no_grad():
        head.weight.mul_(scale)
        head.bias.zero_()


# --- timm ---------------------------------------------------------------------------------------------------------
TIMM_MODELS = {  # architecture: (crop_mode its checkpoint states, head scale)
    "test_resnet": ("center", 40.0),
    "test_efficientnet": ("squash", 500.0),
    "test_vit": ("border", 5.0),
}


def write_timm_folder(folder: Path, architecture: str) -> Path:
    """``timm.models.save_for_hf``'s folder (config.json + model.safetensors) of a tiny timm model."""
    import timm
    from timm.models import save_for_hf

    crop_mode, scale = TIMM_MODELS[architecture]
    torch.manual_seed(SEED)
    model = timm.create_model(architecture, pretrained=False, num_classes=len(CLASSES)).eval()
    _spread(model.get_classifier(), scale)
    model.pretrained_cfg = {**model.pretrained_cfg, "crop_mode": crop_mode}
    save_for_hf(model, str(folder), model_config={"label_names": CLASSES}, safe_serialization=True)
    return folder


def timm_probabilities(folder: Path, photos: list[bytes]) -> np.ndarray:
    """timm's own answer: the folder loaded by timm (local-dir:), its create_transform(**resolve_data_config)."""
    import timm
    from timm.data import create_transform, resolve_data_config

    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    transform = create_transform(**resolve_data_config({}, model=model))
    batch = torch.stack([transform(Image.open(io.BytesIO(data)).convert("RGB")) for data in photos])
    with torch.inference_mode():
        return torch.softmax(model(batch), dim=1).numpy()


# --- transformers -------------------------------------------------------------------------------------------------
def write_transformers_folder(folder: Path, kind: str) -> Path:
    """``save_pretrained``'s folder (config.json, model.safetensors, preprocessor_config.json) of a tiny ViT or
    ConvNeXt image classifier."""
    from transformers import (
        ConvNextConfig,
        ConvNextForImageClassification,
        ConvNextImageProcessorPil,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessorPil,
    )

    labels = {"id2label": dict(enumerate(CLASSES)), "label2id": {name: i for i, name in enumerate(CLASSES)}}
    torch.manual_seed(SEED)
    if kind == "vit":
        config = ViTConfig(
            image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, **labels,
        )  # fmt: skip
        model = ViTForImageClassification(config).eval()
        processor = ViTImageProcessorPil(size={"height": 64, "width": 64}, resample=2)
        _spread(model.classifier, 4.0)
    else:
        config = ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], image_size=64, **labels)
        model = ConvNextForImageClassification(config).eval()
        processor = ConvNextImageProcessorPil(size={"shortest_edge": 63}, crop_pct=0.875, resample=3)
        _spread(model.classifier, 30.0)
    model.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    return folder


def transformers_pipeline_answers(folder: Path, photos: list[bytes]) -> list[list[tuple[str, float]]]:
    """``transformers.pipeline("image-classification")``'s top 5 for each photo, with the processor's PIL backend
    (the one that resizes as Pillow does)."""
    from transformers import AutoImageProcessor, pipeline

    classifier = pipeline(
        "image-classification",
        model=str(folder),
        image_processor=AutoImageProcessor.from_pretrained(str(folder), backend="pil"),
        device="cpu",
    )
    images = [Image.open(io.BytesIO(data)).convert("RGB") for data in photos]
    return [[(row["label"], row["score"]) for row in answer] for answer in classifier(images, top_k=5)]


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


LIBRARY_MODELS = (
    "timm:test_resnet",
    "timm:test_efficientnet",
    "timm:test_vit",
    "transformers:vit",
    "transformers:convnext",
)


def write_library_folder(folder: Path, model: str) -> Path:
    """``model`` ("timm:ARCHITECTURE" or "transformers:vit|convnext") saved by its library into ``folder``."""
    library, name = model.split(":")
    return write_timm_folder(folder, name) if library == "timm" else write_transformers_folder(folder, name)


def library_probabilities(folder: Path, model: str, photos: list[bytes]) -> np.ndarray:
    """What the model's own library answers for ``photos``: one probability row per photo, CLASSES' order."""
    if model.startswith("timm:"):
        return timm_probabilities(folder, photos)
    answers = transformers_pipeline_answers(folder, photos)
    return np.array([[dict(answer)[name] for name in CLASSES] for answer in answers])
