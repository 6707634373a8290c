"""The network factory: MLPs for vectors, the Nature-DQN and Car Racing CNNs for uint8 images."""

from __future__ import annotations

import pytest
import torch

from sqil_lightning.errors import ConfigError
from sqil_lightning.learners.networks import ENCODERS, PixelNetwork, build_network, mlp
from sqil_lightning.learners.soft_q import SoftQSQIL


@pytest.mark.parametrize("encoder,shape,features", [("nature_cnn", (4, 84, 84), 64 * 7 * 7), ("car_racing_cnn", (3, 64, 64), 256 * 2 * 2)])
def test_cnn_encoders_map_their_image_size_to_the_published_feature_sizes(encoder, shape, features):
    assert ENCODERS[encoder](shape[0])(torch.zeros(2, *shape)).shape == (2, features)


def test_pixel_network_takes_uint8_images_as_floats_in_0_1_with_any_leading_dims():
    torch.manual_seed(0)
    network = build_network((3, 64, 64), 5, [32], encoder="car_racing_cnn")
    assert isinstance(network, PixelNetwork)
    pixels = torch.randint(0, 256, (2, 3, 3, 64, 64), dtype=torch.uint8)  # [time, batch, C, H, W]
    out = network(pixels)
    assert out.shape == (2, 3, 5) and out.dtype == torch.float32
    torch.testing.assert_close(out, network(pixels.float() / 255.0))
    out.sum().backward()
    assert all(p.grad is not None for p in network.encoder.parameters())


def test_without_an_encoder_the_factory_builds_the_flat_mlp():
    torch.manual_seed(0)
    built = build_network((8,), 4, [16, 16])
    torch.manual_seed(0)
    expected = mlp(8, 4, [16, 16])
    assert [p.shape for p in built.parameters()] == [p.shape for p in expected.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(built.parameters(), expected.parameters()))  # same init, same RNG use


def test_soft_q_learner_with_an_encoder_acts_on_images():
    module = SoftQSQIL(observation_shape=(4, 84, 84), action_space={"n": 6}, hidden_sizes=(64,), encoder="nature_cnn")
    from tensordict import TensorDict

    frames = TensorDict({"observation": torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)}, [3])
    actions = module.policy(deterministic=True)(frames)["action"]
    assert actions.shape == (3,) and int(actions.max()) < 6


@pytest.mark.parametrize(
    "shape,encoder,fragment",
    [
        ((8,), "nature_cnn", "needs image observations [channels, height, width]; the env observes (8,)"),
        ((4, 20, 20), "nature_cnn", "images of (4, 20, 20) are too small for it"),
        ((4, 84, 84), "resnet", "model.encoder = 'resnet' is invalid; choose one of ['car_racing_cnn', 'nature_cnn'] or null"),
    ],
)
def test_bad_encoder_settings_are_config_errors_naming_the_key(shape, encoder, fragment):
    with pytest.raises(ConfigError) as error:
        build_network(shape, 4, [16], encoder=encoder)
    assert fragment in str(error.value)


@pytest.mark.parametrize("learner", ["soft_q", "sac"])
def test_layer_norm_normalises_each_hidden_layer_of_the_critics_only(learner):
    from sqil_lightning import SACSQIL, SoftQSQIL

    if learner == "soft_q":
        model = SoftQSQIL(observation_shape=(3,), action_space={"n": 4}, hidden_sizes=(16, 8), layer_norm=True)
        critics, plain = [model.q_network, model.target_network], []
    else:
        model = SACSQIL(observation_shape=(3,), action_space={"low": [-1.0], "high": [1.0]}, hidden_sizes=(16, 8), layer_norm=True)
        critics, plain = [model.sac_loss.qvalue_network], [model.actor]
    for network in critics:
        norms = [m for m in network.modules() if isinstance(m, torch.nn.LayerNorm)]
        assert [norm.normalized_shape for norm in norms] == [(16,), (8,)]
    for network in plain:
        assert not any(isinstance(m, torch.nn.LayerNorm) for m in network.modules())
    # Each hidden activation of a normalised layer has mean 0 and variance 1 before its ReLU.
    layers = list(critics[0]) if learner == "soft_q" else list(critics[0].module)
    hidden = layers[1](layers[0](torch.randn(32, layers[0].in_features)))
    assert hidden.mean(-1).abs().max() < 1e-5 and (hidden.var(-1, unbiased=False) - 1).abs().max() < 1e-3


def test_without_layer_norm_the_networks_keep_their_parameter_names():
    """Checkpoints of the plain MLP load into the default learner: no LayerNorm, no new keys."""
    from sqil_lightning import SoftQSQIL

    names = list(SoftQSQIL(observation_shape=(3,), action_space={"n": 4}, hidden_sizes=(16,)).state_dict())
    assert names[:4] == ["q_network.0.weight", "q_network.0.bias", "q_network.2.weight", "q_network.2.bias"]
