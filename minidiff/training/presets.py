"""The named training presets. PRESETS, for diffusion models (`python -m minidiff train --config NAME`): "mnist" (the
shipped class-conditional MNIST-5k model), its rectified-flow twin "mnist_flow", "tiny" and "tiny_flow" (seconds-long
runs for tests), "shapes_latent" (latent diffusion on the Shapes dataset, conditioned on its attributes), its
pixel-space twin "shapes_pixel", "shapes_text" (text to image), its diffusion-transformer twin "shapes_text_dit",
"tiny_latent" and "tiny_dit", and "emoji_text" (text to emoji on a frozen CLIP's text tower) with its test-sized
"tiny_emoji_text". AUTOENCODER_PRESETS, for the autoencoder (`python -m minidiff train-vae --preset NAME`):
"shapes" (the shipped shapes_vae), "emoji" (emoji_vae), "emoji_decoder" (a wider decoder fine-tuned alone
behind emoji_vae's frozen encoder) and "tiny". The CLIPs' presets are minidiff.training.clip's.
"""

from minidiff.diffusion.config import DiffusionConfig
from minidiff.models import clip_tower_config
from minidiff.nets.autoencoder import AutoencoderConfig
from minidiff.nets.bpe import emoji_tokenizer
from minidiff.nets.clip import CLIPConfig
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


def emoji_text_config() -> TrainConfig:
    """Text to emoji: shapes_latent's U-Net (64-128 channels, two blocks per level, self- and cross-attention at
    8 x 8 and 4 x 4) over emoji_vae's 8 x 8 x 4 latents, reading through cross-attention the per-token vectors
    (B, 24, 128) of the frozen text tower of the emoji_clip checkpoint, as Stable Diffusion reads CLIP's last
    layer. The generator's CLIP only: the evaluator is another CLIP (another seed), never used here. Each training
    image comes twice, with its plain and its styled caption (`minidiff.training.data.encoded_emoji`); one caption
    in ten is dropped to the empty prompt for classifier-free guidance; v-prediction, as shapes_latent.

    Sizing, float32 weights: two CLIPs 2 x 1.06M parameters (8.5 MB), emoji_vae 1.21M (4.9 MB, its wider decoder), this
    model 4.91M for the U-Net plus its copy of the text tower, 0.73M (22.6 MB): 36 MB of the 60 MB budget. The budget
    would hold a 96-192 U-Net (10.8M, 59 MB in all), but time does not: on the same busy 2-core CPU a step of 128
    latents took 26.6 s at 96-192 against 6.5 s at 64-128 (the frozen text tower's forward pass, 0.57 s of it).
    Measured with this preset: about 1 s per step on a quiet 2-core CPU (the shipped run's first 5,000 steps took
    75.6 minutes), 4.2 s on one shared with other jobs, where a budget in minutes (--minutes) instead of steps keeps
    a run to its time. 8,000 steps are 1.02M image-caption pairs, 79 passes over the 12,902 of the train split. The
    EMA model is kept at steps 250, 750, 2,000 and 5,000 as well (models/step_NNNNNN): the learning curve's points.
    """
    unet = UNetConfig(in_channels=4, channels=(64, 128), attention_levels=(True, True), heads=4, context_dim=128,
                      dropout=0.1)
    return TrainConfig(unet=unet, diffusion=DiffusionConfig(prediction="v"), data="emoji_latents",
                       autoencoder="emoji_vae", encoder=clip_tower_config(CLIPConfig(len(emoji_tokenizer())), "emoji_clip"),
                       token_drop_prob=0.0, class_drop_prob=0.1, batch_size=128, lr=5e-4, steps=8000,
                       checkpoint_every_minutes=10.0, sample_every_steps=500, sample_grid_steps=50,
                       keep_models_at_steps=(250, 750, 2000, 5000))


def tiny_clip_network() -> CLIPConfig:
    """The tiny CLIP preset's network (minidiff.training.clip.tiny_clip_config; tests/training/test_emoji_text.py
    checks that they agree)."""
    return CLIPConfig(len(emoji_tokenizer()), text_dim=32, text_layers=1, heads=2, channels=(8, 16), groups=4,
                      embed_dim=16)


def tiny_emoji_text_config() -> TrainConfig:
    """An emoji run of a few seconds for tests: an 8-16 U-Net on a tiny CLIP's text tower (the test names its
    CLIP and autoencoder checkpoints: config.encoder = minidiff.models.clip_encoder_config(path))."""
    unet = UNetConfig(in_channels=4, channels=(8, 16), blocks_per_level=1, attention_levels=(False, True), heads=2,
                      groups=4, context_dim=32, dropout=0.0)
    return TrainConfig(unet=unet, diffusion=DiffusionConfig(T=100, prediction="v"), data="emoji_latents",
                       autoencoder="emoji_vae", encoder=clip_tower_config(tiny_clip_network(), "emoji_clip"), batch_size=16,
                       lr=1e-3, warmup_steps=5, steps=20, checkpoint_every_minutes=None, sample_every_steps=None,
                       sample_grid_steps=10)


def emoji_vae_config() -> VAETrainConfig:
    """emoji_vae: 32 x 32 x 3 emoji to 8 x 8 x 4 latents, the shapes autoencoder's code and widths (0.46M
    parameters) on the emoji train split, PSNR measured on the test images and both held-out compositions. 3,000
    steps of 64 (30 passes over the 6,451 images, the whole cosine decay): a step took 0.6 s for shapes_vae on a
    quiet CPU and 2.1 s here on a busy one, so 30 to 105 minutes. A fixed step count, so the run is the same run
    on any machine."""
    return VAETrainConfig(data="emoji", eval_images=1000, steps=3000, minutes=None)


def emoji_decoder_config() -> VAETrainConfig:
    """A wider decoder (64-128-128, four times emoji_vae's first decoder's compute per pixel) behind emoji_vae's
    frozen encoder: the latent space, its scale factor and every model trained in it stay as they are, and only the
    pictures they decode to get sharper. The first decoder reached 27.75 dB on the test emoji after 3,000 steps (the
    course's bar for an autoencoder is 30 dB); the shipped one is this preset run for 4 minutes on an NVIDIA H200
    (`--minutes 4`: 28,017 steps, the learning rate at a tenth after step 12,000), 31.98 dB. Since then emoji_vae
    names the shipped, wider autoencoder, whose decoder this preset would go on training; to train the shipped one
    again, train the first (`--preset emoji --out runs/emoji_vae`), then this preset with `--decoder-from
    runs/emoji_vae/autoencoder --steps 28017`: about 8 hours on a 2-core CPU, at about 1 s a step."""
    autoencoder = AutoencoderConfig(decoder_channels=(64, 128, 128))
    return VAETrainConfig(autoencoder=autoencoder, data="emoji", eval_images=1000, steps=12000,
                          decay_steps=12000, minutes=None, decoder_from="emoji_vae")


PRESETS = {"mnist": mnist_config, "mnist_flow": mnist_flow_config, "tiny": tiny_config, "tiny_flow": tiny_flow_config,
           "shapes_latent": shapes_latent_config, "shapes_pixel": shapes_pixel_config,
           "shapes_text": shapes_text_config, "tiny_latent": tiny_latent_config,
           "shapes_text_dit": shapes_text_dit_config, "tiny_dit": tiny_dit_config, "emoji_text": emoji_text_config,
           "tiny_emoji_text": tiny_emoji_text_config}
# train-vae --preset
AUTOENCODER_PRESETS = {"shapes": shapes_vae_config, "emoji": emoji_vae_config, "emoji_decoder": emoji_decoder_config,
                       "tiny": tiny_vae_config}
