"""The named training presets. PRESETS, for diffusion models (`python -m minidiff train --config NAME`): "mnist" (the
shipped class-conditional MNIST-5k model), its rectified-flow twin "mnist_flow", "tiny" and "tiny_flow" (seconds-long
runs for tests), "shapes_latent" (latent diffusion on the Shapes dataset, conditioned on its attributes), its
pixel-space twin "shapes_pixel", "shapes_text" (text to image), its diffusion-transformer twin "shapes_text_dit", and
"tiny_latent" and "tiny_dit". AUTOENCODER_PRESETS, for the autoencoder (`python -m minidiff train-vae --preset
NAME`): "shapes" (the shipped shapes_vae) and "tiny".
"""

from minidiff.diffusion.config import DiffusionConfig
from minidiff.nets.autoencoder import AutoencoderConfig
from minidiff.nets.conditioning import EncoderConfig
from minidiff.nets.dit import DiTConfig
from minidiff.nets.text import MAX_LENGTH
from minidiff.nets.unet import UNetConfig
from minidiff.training.config import TrainConfig, VAETrainConfig


def mnist_config() -> TrainConfig:
    """The shipped model: class-conditional MNIST-5k, a 32-64-64 U-Net (1.74M parameters, 7 MB) with attention at 7x7.

    The (1, 2, 2) channel pattern is DDPM's CIFAR-10 one, scaled down to fit the 10 MB budget for shipped weights.
    1,000 steps of 128 images are 128k images, 26 epochs: about 20 minutes on an idle 2-core CPU (~110 images/s).
    Digits are clean and follow their label from about step 500 on.
    """
    unet = UNetConfig(in_channels=1, channels=(32, 64, 64), attention_levels=(False, False, True), num_classes=10)
    return TrainConfig(unet=unet, diffusion=DiffusionConfig(prediction="eps"), steps=1000, checkpoint_every_minutes=5.0)


def mnist_flow_config() -> TrainConfig:
    """The rectified-flow twin of `mnist_config`: the same U-Net, images, batches, steps and seed, trained on the
    straight path's velocity (prediction "flow", t logit-normal as in SD3) with plain MSE, since Min-SNR weights
    are weights over a VP schedule's steps. Sampled with the flow samplers (`minidiff.diffusion.samplers`:
    `sample_flow_euler`, `sample_flow_midpoint`, `sample_flow_heun`)."""
    config = mnist_config()
    config.unet.time_scale = 1000.0  # the embedding reads 1000 t, as for the VP model's steps (and in SD3)
    config.diffusion = DiffusionConfig(prediction="flow", time_sampling="logit_normal")
    config.min_snr_gamma = None
    return config


def tiny_config() -> TrainConfig:
    """A run of a few seconds for tests: a two-level 8-16 channel U-Net, T = 100, 64 images, 4 batches per epoch."""
    unet = UNetConfig(in_channels=1, channels=(8, 16), blocks_per_level=1, attention_levels=(False, True), heads=2,
                      groups=4, num_classes=10, dropout=0.1)
    return TrainConfig(unet=unet, diffusion=DiffusionConfig(T=100), max_images=64, batch_size=16, lr=1e-3, warmup_steps=5, steps=20,
                       checkpoint_every_minutes=None, sample_every_steps=None, sample_grid_steps=10)


def tiny_flow_config() -> TrainConfig:
    """`tiny_config` as a rectified-flow model, for tests."""
    config = tiny_config()
    config.diffusion = DiffusionConfig(prediction="flow")
    config.min_snr_gamma = None
    return config


def shapes_latent_config() -> TrainConfig:
    """Latent diffusion on Shapes: a 64-128 U-Net over the 8 x 8 x 4 latents of the shipped VAE, conditioned on the
    four attributes through cross-attention at both levels (8 x 8 and 4 x 4) and in the middle.

    v-prediction: with the cosine schedule alpha_bar[T-1] is 2.4e-9, where an eps-prediction's x0 = (x_t - ...) /
    sqrt(alpha_bar) magnifies any error 20,000 times; the latents cannot be clipped to [-1, 1] the way pixels can,
    and v gives x0 without that division (Salimans & Ho 2022, sec. 4).
    """
    unet = UNetConfig(in_channels=4, channels=(64, 128), attention_levels=(True, True), heads=4, context_dim=64,
                      dropout=0.1)
    return TrainConfig(unet=unet, diffusion=DiffusionConfig(prediction="v"), data="shapes_latents", autoencoder="shapes_vae", encoder=EncoderConfig(dim=64),
                       token_drop_prob=0.1, batch_size=128, lr=5e-4, steps=6000, checkpoint_every_minutes=5.0,
                       sample_every_steps=1000, sample_grid_steps=50)


def shapes_pixel_config() -> TrainConfig:
    """The pixel-space twin of shapes_latent, for the cost benchmark (benchmarks/latent_cost.py): the same widths,
    blocks, encoder and schedule on 32 x 32 x 3 pixels. Attention sits where a pixel model would put it, at 16 x 16
    and in the middle: at 32 x 32 (1,024 positions) it alone would cost more than the whole latent U-Net."""
    config = shapes_latent_config()
    config.unet = UNetConfig(**{**config.unet.to_dict(), "in_channels": 3, "attention_levels": (False, True)})
    config.data, config.autoencoder = "shapes", None
    return config


def shapes_text_config() -> TrainConfig:
    """Text-to-image: shapes_latent's U-Net, read through cross-attention by a tiny 2-block transformer over the
    caption's words (minidiff.nets.text), trained together. Captions are full or shortened (training_captions); one in
    ten is dropped to the empty prompt for classifier-free guidance."""
    config = shapes_latent_config()
    config.encoder = EncoderConfig(kind="text", dim=64, length=MAX_LENGTH, layers=2, heads=4)
    config.token_drop_prob = 0.0  # shortened captions already leave words out
    return config


def tiny_latent_config() -> TrainConfig:
    """A latent run of a few seconds for tests (needs the shipped VAE): 256 Shapes, an 8-16 channel U-Net."""
    unet = UNetConfig(in_channels=4, channels=(8, 16), blocks_per_level=1, attention_levels=(False, True), heads=2,
                      groups=4, context_dim=16, dropout=0.0)
    return TrainConfig(unet=unet, diffusion=DiffusionConfig(T=100, prediction="v"), data="shapes_latents",
                       autoencoder="shapes_vae", encoder=EncoderConfig(dim=16), dataset_size=256, batch_size=16, lr=1e-3, warmup_steps=5, steps=20, token_drop_prob=0.1,
                       checkpoint_every_minutes=None, sample_every_steps=None, sample_grid_steps=10)


def shapes_text_dit_config() -> TrainConfig:
    """shapes_text with a diffusion transformer (minidiff.nets.dit) in the U-Net's place: the same latents, captions,
    text encoder, v-prediction, batches and steps. Patches of 2 x 2 latent cells make 16 tokens of width 128; six
    blocks of 4-head attention, each reading the caption through cross-attention."""
    config = shapes_text_config()
    config.unet = None
    config.dit = DiTConfig(in_channels=4, patch_size=2, dim=128, depth=6, heads=4, context_dim=64)
    return config


def tiny_dit_config() -> TrainConfig:
    """tiny_latent with a two-block, 16-wide DiT, for tests (needs the shipped VAE, or a test's own)."""
    config = tiny_latent_config()
    config.unet = None
    config.dit = DiTConfig(in_channels=4, patch_size=2, dim=16, depth=2, heads=2, context_dim=16)
    return config


def shapes_vae_config() -> VAETrainConfig:
    """The shipped shapes_vae: 32 x 32 x 3 Shapes to 8 x 8 x 4 latents, 25 minutes on the CPU."""
    return VAETrainConfig()


def tiny_vae_config() -> VAETrainConfig:
    """An autoencoder run of a few seconds for tests: 64 Shapes, 8 channels per level, 12 steps."""
    return VAETrainConfig(autoencoder=AutoencoderConfig(channels=(8, 8, 8), groups=4), dataset_size=64, batch_size=16,
                          warmup_steps=3, decay_steps=12, steps=12, minutes=None, checkpoint_every_minutes=None,
                          eval_images=16)


PRESETS = {"mnist": mnist_config, "mnist_flow": mnist_flow_config, "tiny": tiny_config, "tiny_flow": tiny_flow_config,
           "shapes_latent": shapes_latent_config, "shapes_pixel": shapes_pixel_config,
           "shapes_text": shapes_text_config, "tiny_latent": tiny_latent_config,
           "shapes_text_dit": shapes_text_dit_config, "tiny_dit": tiny_dit_config}
AUTOENCODER_PRESETS = {"shapes": shapes_vae_config, "tiny": tiny_vae_config}  # train-vae --preset
