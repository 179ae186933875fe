import copy
import re
import runpy
import sys

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from srgan_noise.base.config import preset
from srgan_noise.base.errors import UserError
from srgan_noise.inference.weights import save_generator
from srgan_noise.models import perceptual
from srgan_noise.models.generator import Generator
from srgan_noise.models.perceptual import FEATURE_SCALE, load_vgg, load_vgg_loss

torchvision = pytest.importorskip("torchvision")

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vgg(tmp_path_factory):
    """torchvision's VGG19 with random conv weights, saved as .pth and .safetensors
    (550 MB each, deleted afterwards): (model, pth path, safetensors path)."""
    torch.manual_seed(0)
    # vgg19(weights=None) itself, built on the meta device: initialising its
    # 120M-parameter classifier takes seconds, and the loss never reads it.
    with torch.device("meta"):
        model = torchvision.models.vgg19(weights=None)
    model = model.to_empty(device="cpu").eval()
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):  # torchvision's initialisation: features keep their scale
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.Linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
    folder = tmp_path_factory.mktemp("vgg")
    pth, safetensors = folder / "vgg19.pth", folder / "vgg19.safetensors"
    torch.save(model.state_dict(), pth)
    save_file(model.state_dict(), safetensors)
    yield model, pth, safetensors
    pth.unlink()
    safetensors.unlink()


@pytest.fixture(scope="module")
def loss(vgg):
    return load_vgg_loss(vgg[1])


def images(batch=2, size=32):
    return torch.rand(batch, 3, size, size), torch.rand(batch, 3, size, size)


def test_torch_safetensors_and_features_only_files_give_identical_losses(vgg, loss, tmp_path):
    model, _, safetensors = vgg
    features_only = tmp_path / "features.pth"
    # in torch's pre-1.6 format, that of torchvision's own vgg19-dcbb9e9d.pth
    torch.save({key: value for key, value in model.state_dict().items() if key.startswith("features.")},
               features_only, _use_new_zipfile_serialization=False)
    sr, hr = images()
    expected = loss(sr, hr)
    assert torch.equal(load_vgg_loss(safetensors)(sr, hr), expected)
    assert torch.equal(load_vgg_loss(features_only)(sr, hr), expected)


def test_truncated_at_conv5_4_before_its_relu(vgg, loss):
    model = vgg[0]
    conv5_4, relu = model.features[34], model.features[35]
    assert isinstance(conv5_4, nn.Conv2d) and conv5_4.in_channels == conv5_4.out_channels == 512
    assert isinstance(relu, nn.ReLU)
    assert len(loss.features) == 35 and isinstance(loss.features[-1], nn.Conv2d)
    image = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = model.features[:35]((image - MEAN) / STD)
        features = loss.feature_maps(image)
    assert features.shape == (2, 512, 2, 2)
    torch.testing.assert_close(features, expected)
    assert features.min() < 0  # no ReLU at the end


def test_loss_is_zero_for_identical_images_and_the_scaled_feature_mse(vgg, loss):
    model = vgg[0]
    sr, hr = images()
    assert loss(hr, hr.clone()).item() == 0
    value = loss(sr, hr)
    with torch.no_grad():
        phi_sr, phi_hr = (model.features[:35]((image - MEAN) / STD) for image in (sr, hr))
    expected = ((phi_sr - phi_hr) / 12.75).pow(2).mean()
    assert value.shape == () and value.item() > 0
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(value, (phi_sr - phi_hr).pow(2).mean() / 162.5625)
    assert FEATURE_SCALE == 1 / 12.75


def test_gradient_reaches_sr_only(loss):
    sr, hr = images()
    sr.requires_grad_(True)
    hr.requires_grad_(True)
    loss(sr, hr).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert hr.grad is None
    assert all(not parameter.requires_grad and parameter.grad is None for parameter in loss.parameters())


def test_frozen_in_eval_mode_even_inside_a_training_module(loss):
    parent = nn.ModuleDict({"content": loss}).train()
    assert not loss.training and not loss.features.training
    assert not any(parameter.requires_grad for parameter in parent.parameters())


def test_channels_last_and_bf16_autocast(loss):
    sr, hr = images(batch=1, size=16)  # bf16 convolutions are slow on CPUs without bf16 units
    expected = loss(sr, hr)
    as_nhwc = [image.contiguous(memory_format=torch.channels_last) for image in (sr, hr)]
    torch.testing.assert_close(loss(*as_nhwc), expected)
    torch.testing.assert_close(copy.deepcopy(loss).to(memory_format=torch.channels_last)(*as_nhwc), expected)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(sr, hr)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, expected, rtol=0.1, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_device_of_its_input(loss):
    sr, hr = images()
    device_loss = copy.deepcopy(loss).to("cuda", memory_format=torch.channels_last)
    sr_device, hr_device = (image.cuda().contiguous(memory_format=torch.channels_last) for image in (sr, hr))
    value = device_loss(sr_device, hr_device)
    assert value.device.type == "cuda"
    torch.testing.assert_close(value.cpu(), loss(sr, hr), rtol=1e-2, atol=0)  # TF32 convolutions
    with torch.autocast("cuda", dtype=torch.bfloat16):
        value = device_loss(sr_device.requires_grad_(True), hr_device)
    value.backward()
    assert value.dtype == torch.float32 and sr_device.grad.abs().sum() > 0


def test_importing_the_module_does_not_need_torchvision(monkeypatch):
    for name in [name for name in sys.modules if name.split(".")[0] == "torchvision"] + ["torchvision"]:
        monkeypatch.setitem(sys.modules, name, None)  # any import of torchvision now fails
    module = runpy.run_path(perceptual.__file__)  # a fresh copy, leaving the imported one alone
    with pytest.raises(ImportError):
        module["vgg54"]()


def raises(path, message):
    """pytest.raises for the one-line UserError `{path}: {message}` (message taken literally)."""
    return pytest.raises(UserError, match=f"^{re.escape(f'{path}: {message}')}$")


def test_missing_file(tmp_path):
    with raises(tmp_path / "absent.pth", "no such file"):
        load_vgg(tmp_path / "absent.pth")
    with raises(tmp_path, "not a file"):
        load_vgg(tmp_path)


def test_generator_weights_are_not_a_vgg(tmp_path):
    generator = Generator(preset("tiny", scale=2))
    save_generator(generator, tmp_path / "g.safetensors")
    torch.save(generator.state_dict(), tmp_path / "g.pth")
    for path in (tmp_path / "g.safetensors", tmp_path / "g.pth"):
        with raises(path, "not a VGG19 state dict (missing features.0.weight)"):
            load_vgg(path)


def test_wrong_shapes_missing_layers_and_bad_values(vgg, tmp_path):
    state = {key: value for key, value in vgg[0].state_dict().items() if key.startswith("features.")}
    path = tmp_path / "shape.safetensors"
    save_file({**state, "features.0.weight": torch.zeros(64, 1, 3, 3)}, path)
    with raises(path, "not a VGG19 state dict (features.0.weight has shape (64, 1, 3, 3), VGG19 has (64, 3, 3, 3))"):
        load_vgg(path)
    path = tmp_path / "vgg16ish.pth"
    torch.save({key: value for key, value in state.items() if key != "features.34.weight"}, path)
    with raises(path, "not a VGG19 state dict (missing features.34.weight)"):
        load_vgg(path)
    path = tmp_path / "nan.pth"
    torch.save({**state, "features.34.bias": torch.full((512,), float("nan"))}, path)
    with raises(path, "the weights contain inf or NaN values (features.34.bias)"):
        load_vgg(path)


def test_corrupt_or_unsafe_files(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    truncated = tmp_path / "truncated.safetensors"
    save_file({"features.0.weight": torch.zeros(64, 3, 3, 3)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    for path in (garbage, truncated, empty):
        with pytest.raises(UserError, match=rf"^{re.escape(str(path))}: cannot read weights \([^\n]+\)$") as caught:
            load_vgg(path)
        assert "weights_only" not in str(caught.value)  # never torch's advice to unpickle anything
    pickled = tmp_path / "pickled.pth"
    torch.save({"features.0.weight": nn.Conv2d(3, 64, 3)}, pickled)  # refused by weights_only, never unpickled
    with raises(pickled, "cannot read weights (it pickles a torch.nn.modules.conv.Conv2d; only tensors are loaded)"):
        load_vgg(pickled)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with raises(listed, "not a state dict (a list, not a dict of tensors)"):
        load_vgg(listed)
