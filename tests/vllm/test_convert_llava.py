"""`egoframe vllm convert-llava`: a tiny LLaVA written in the original repository's layout converts to the
llava-hf layout, and the converted model computes what the original one does (logits to 1e-5)."""

from __future__ import annotations

import json
import os

import pytest
import torch

V = 12  # the original vocabulary: words and <pad> <unk> <s> </s>, no <image> (LLaVA marks images with id -200)
WORDS = ["<pad>", "<unk>", "<s>", "</s>", "the", "person", "takes", "cup", "left", "right", "hand", "."]


def original_tokenizer(folder):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>",
                                        bos_token="<s>", eos_token="</s>")
    tokenizer.save_pretrained(folder)


def reference_llava(projector: str):
    """The model the original checkpoint is written from: llava-hf classes, vocabulary V + 1 (<image> = V)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                              image_size=28, patch_size=14, projection_dim=16)
    text = LlamaConfig(vocab_size=V + 1, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                       pad_token_id=0, bos_token_id=2, eos_token_id=3, tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=V, image_seq_length=4,
                         vision_feature_layer=-2, vision_feature_select_strategy="default",
                         projector_hidden_act="gelu" if projector == "mlp2x_gelu" else "linear")
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    with torch.no_grad():
        for weight in (model.model.language_model.embed_tokens.weight, model.lm_head.weight):
            weight[V] = weight[:V].mean(0)  # what the conversion gives the new <image> row
        if projector == "linear":  # one Linear: the second layer is the identity
            model.model.multi_modal_projector.linear_2.weight.copy_(torch.eye(32))
            model.model.multi_modal_projector.linear_2.bias.zero_()
    return model


def write_original(model, folder, projector: str, tower_in_checkpoint: bool, pickle: bool):
    """``model`` saved as haotian-liu/LLaVA saves a LlavaLlamaForCausalLM (and its CLIP tower beside it)."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    src, tower = folder / "llava-original", folder / "clip-tower"
    src.mkdir()
    state = {}
    for key, value in model.state_dict().items():
        value = value.clone()
        if key.startswith("model.language_model."):
            state["model." + key[len("model.language_model."):]] = value[:V] if "embed_tokens" in key else value
        elif key == "lm_head.weight":
            state[key] = value[:V]
        elif key.startswith("model.multi_modal_projector."):
            layer, name = key.split(".")[-2:]
            if projector == "mlp2x_gelu":
                state[f"model.mm_projector.{0 if layer == 'linear_1' else 2}.{name}"] = value
            elif layer == "linear_1":
                state[f"model.mm_projector.{name}"] = value
        elif key.startswith("model.vision_tower.") and tower_in_checkpoint:
            # LLaVA's names: CLIPVisionModel's vision_model level inside its CLIPVisionTower wrapper
            state["model.vision_tower.vision_tower.vision_model." + key[len("model.vision_tower."):]] = value
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)  # old checkpoints carry this buffer
    if pickle:
        half = len(state) // 2
        items = list(state.items())
        torch.save(dict(items[:half]), src / "pytorch_model-00001-of-00002.bin")
        torch.save(dict(items[half:]), src / "pytorch_model-00002-of-00002.bin")
    else:
        save_file(state, str(src / "model.safetensors"))
    text = model.config.text_config
    (src / "config.json").write_text(json.dumps({
        "architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava_llama", "vocab_size": V,
        "hidden_size": text.hidden_size, "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers, "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
        "hidden_act": "silu", "tie_word_embeddings": False, "mm_hidden_size": 16, "mm_projector_type": projector,
        "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch", "mm_vision_tower": str(tower),
        "mm_use_im_start_end": False, "mm_use_im_patch_token": False, "image_aspect_ratio": "pad"}))
    original_tokenizer(src)
    clip = CLIPVisionModel(model.config.vision_config)
    clip.load_state_dict(model.model.vision_tower.state_dict())
    clip.save_pretrained(tower)
    CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(tower)
    if pickle:  # the published openai/clip-vit-* files keep the vision_model. level (and a text tower)
        from safetensors.torch import load_file

        weights = load_file(str(tower / "model.safetensors"))
        weights = {f"vision_model.{k}": v for k, v in weights.items()} | {"text_model.x.weight": torch.ones(2)}
        save_file(weights, str(tower / "model.safetensors"))
    if tower_in_checkpoint:  # the checkpoint's own (fine-tuned) tower must win over the folder's
        with torch.no_grad():
            for p in clip.parameters():
                p.mul_(0)
        clip.save_pretrained(tower)
    return src, tower


@pytest.mark.parametrize("projector,tower_in_checkpoint,pickle", [("mlp2x_gelu", False, True),
                                                                   ("linear", True, False)])
def test_converted_llava_computes_what_the_original_does(tmp_path, projector, tower_in_checkpoint, pickle):
    from egoframe.vllm.convert import convert_original_llava
    from egoframe.vllm.embeddings import ExtractionConfig, describe_frames, extract_vllm_embeddings
    from egoframe.vllm.model import load_vllm

    reference = reference_llava(projector)
    src, tower = write_original(reference, tmp_path, projector, tower_in_checkpoint, pickle)
    summary = convert_original_llava(str(src), str(tower), str(tmp_path / "hf"))
    assert summary["added_tokens"] == 1 and summary["image_tokens"] == 4 and summary["projector"] == projector
    vllm = load_vllm(str(tmp_path / "hf"))
    assert vllm.model.config.image_token_index == V == vllm.tokenizer.convert_tokens_to_ids("<image>")
    ids = torch.tensor([[2, V, V, V, V, 4, 5, 6, 7]])
    pixels = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        want = reference(input_ids=ids, pixel_values=pixels).logits
        got = vllm.model(input_ids=ids, pixel_values=pixels).logits
    assert torch.allclose(got, want, atol=1e-5)
    # egoframe's VLLM paths run on it: a description and the embeddings H_i, H_t.
    from PIL import Image

    frame = Image.new("RGB", (28, 28), (200, 30, 30))
    short = ExtractionConfig(max_new_tokens=3, n_text_tokens=5)
    assert isinstance(describe_frames(vllm, [frame], ["take cup"], short)[0], str)
    embeddings = extract_vllm_embeddings(vllm, [frame], ["take cup"], short)
    assert tuple(embeddings.image_tokens.shape) == (1, 4, 32)


def test_convert_llava_cli_and_bad_inputs(tmp_path, capsys):
    from egoframe.cli.main import main

    src, tower = write_original(reference_llava("mlp2x_gelu"), tmp_path, "mlp2x_gelu", False, False)
    with pytest.raises(SystemExit) as exit_info:
        main(["vllm", "convert-llava", str(src), "--vision-tower", str(tower), "--out", str(tmp_path / "hf")])
    assert exit_info.value.code == 0, capsys.readouterr().err
    assert "llava-hf layout" in capsys.readouterr().out
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "mm_use_im_start_end": True}))
    for args, message in (
        ([str(src), "--vision-tower", str(tower)], "mm_use_im_start_end"),
        ([str(tmp_path / "hf"), "--vision-tower", str(tower)], "already in the llava-hf layout"),
        ([str(tmp_path), "--vision-tower", str(tower)], "no config.json"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["vllm", "convert-llava", *args, "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    (src / "config.json").write_text(json.dumps(config))
    os.remove(tower / "model.safetensors")
    with pytest.raises(SystemExit) as exit_info:
        main(["vllm", "convert-llava", str(src), "--vision-tower", str(tower), "--out", str(tmp_path / "y")])
    assert exit_info.value.code == 2 and "no *.safetensors" in capsys.readouterr().err
