import torch
from diffusers import UNet2DConditionModel

from egoframe.models.unet import grow_conv_in


def _unet():
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1, cross_attention_dim=16, attention_head_dim=8, norm_num_groups=8,
    )


def test_grown_unet_matches_original_when_extra_channels_are_zero():
    unet = _unet().eval()
    x = torch.randn(2, 4, 8, 8)
    states = torch.randn(2, 5, 16)
    with torch.no_grad():
        before = unet(x, 10, encoder_hidden_states=states).sample
        old_weight = unet.conv_in.weight.clone()
        old_bias = unet.conv_in.bias.clone()
        grow_conv_in(unet, 8)
        after = unet(torch.cat([x, torch.zeros_like(x)], 1), 10, encoder_hidden_states=states).sample
        changed = unet(torch.cat([x, torch.ones_like(x)], 1), 10, encoder_hidden_states=states).sample
    assert unet.config.in_channels == 8 and unet.conv_in.in_channels == 8
    assert torch.equal(unet.conv_in.weight[:, :4], old_weight)
    assert torch.count_nonzero(unet.conv_in.weight[:, 4:]) == 0
    assert torch.equal(unet.conv_in.bias, old_bias)
    assert torch.equal(before, after)  # exactly, not approximately
    assert torch.equal(before, changed)  # zero weights ignore the new channels entirely at init


def test_growth_is_idempotent_and_saved_in_config(tmp_path):
    unet = grow_conv_in(_unet(), 8)
    assert grow_conv_in(unet, 8) is unet
    unet.save_pretrained(tmp_path)
    again = UNet2DConditionModel.from_pretrained(tmp_path)
    assert again.conv_in.in_channels == 8
    assert torch.equal(again.conv_in.weight, unet.conv_in.weight)
