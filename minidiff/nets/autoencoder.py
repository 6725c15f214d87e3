r"""The autoencoder of latent diffusion: a KL-regularised VAE from 32 x 32 x 3 images to 8 x 8 x 4 latents.

Papers followed:
- Kingma & Welling 2014, "Auto-Encoding Variational Bayes": the encoder outputs a Gaussian $q(z \mid x) =
  \mathcal N(\mu, \sigma^2)$, a latent is drawn with the reparameterisation $z = \mu + \sigma \epsilon$ (sec. 2.4),
  and its KL divergence to $\mathcal N(0, I)$ has a closed form (appendix B).
- Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models", sec. 3.1: the "KL-reg"
  autoencoder. The KL weight is tiny: the point is a latent space that is smooth and not too spread out, not a
  good generative VAE; the diffusion model does the generating. Sec. 4.3.2 and appendix G: latents are multiplied
  by a scale factor, 1 / (their standard deviation), before diffusion (Stable Diffusion's 0.18215).

The encoder and decoder are made of the U-Net's own ResBlocks (without a time embedding) and its down- and
upsampling layers: two halves of a U-Net without the skip connections, which is exactly what forces all the
information through the 8 x 8 x 4 bottleneck.

Latent diffusion enters and leaves latent space here: `encode_images` turns images into scaled latents
$z = \zeta\, \mu_{\mathcal E}(x)$ with the scale factor $\zeta$ (`scale_factor`), and `decode_latents` turns a
sampled $z_0$ back into an image, $\tilde x = \mathcal D(z_0 / \zeta)$ (Rombach et al. 2022, sec. 3); in between,
the diffusion model and its samplers are those of pixel space. The autoencoder trains on `vae_loss`
(`minidiff.training.vae`); its checkpoints, STEM.safetensors + STEM.json (kind "autoencoder"), are written and read
by `minidiff.models.save_autoencoder` and `minidiff.models.load_autoencoder`.
"""

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from minidiff.nets.layers import Downsample, ResBlock, Upsample

RECONSTRUCTIONS = ("l1", "l2")


@dataclass
class AutoencoderConfig:
    """The autoencoder's shape and loss. kl_weight = 1e-6 was picked by measurement.

    Four 300-step runs of the shapes preset (held-out PSNR / per-image KL / sigma of q(z | x) / `kept`, the share of
    round trips the shape checker reads the same): kl_weight 0: 32.3 dB / 847 / 0.06 / 95.5%; 1e-6: 32.0 dB / 534 / 0.16
    / 96.5%; 1e-5: 31.2 dB / 206 / 0.51 / 92.5%; 1e-4: 27.5 dB / 64 / 0.83 / 86.5%. At 1e-6 the KL is already
    down by a third and the encoder's noise is no longer negligible (a smoother latent space for diffusion) at almost
    no cost in PSNR; from 1e-5 the KL term starts to cost detail (at 1e-4 it costs 5 dB).
    """

    in_channels: int = 3  # RGB
    latent_channels: int = 4  # as Stable Diffusion's autoencoder
    channels: tuple[int, ...] = (32, 64, 64)  # per level; each level after the first halves H and W: 32 -> 16 -> 8
    blocks_per_level: int = 1  # ResBlocks per level, in the encoder and in the decoder
    groups: int = 8  # GroupNorm groups
    kl_weight: float = 1e-6  # kappa, the KL weight: per-image KL (summed over 256 latent entries) against a per-pixel mean error
    reconstruction: str = "l2"  # "l2" (squared error, what PSNR measures) or "l1"
    decoder_channels: tuple[int, ...] | None = None  # the decoder's widths per level; None: the same as `channels`

    def __post_init__(self):
        self.channels = tuple(self.channels)
        if self.decoder_channels is not None:
            self.decoder_channels = tuple(self.decoder_channels)
            if len(self.decoder_channels) != len(self.channels):
                raise ValueError(f"decoder_channels must have one width per level, {len(self.channels)} like "
                                 f"channels {self.channels}, got {self.decoder_channels}")
        if self.reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {self.reconstruction!r}")
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")
        for c in self.channels + (self.decoder_channels or ()):
            if c % self.groups != 0:
                raise ValueError(f"{c} channels cannot be split into {self.groups} GroupNorm groups")

    @property
    def decoder_widths(self) -> tuple[int, ...]:
        """The decoder's widths per level: decoder_channels, or the encoder's `channels` when that is None."""
        return self.decoder_channels or self.channels

    @property
    def downsampling(self) -> int:
        """How much smaller a latent is than its image, per side: 2 ** (levels - 1)."""
        return 2 ** (len(self.channels) - 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AutoencoderConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if "beta" in unknown:
            raise ValueError("this autoencoder config has a 'beta' field: the KL weight is called 'kl_weight' now "
                             "(beta is the noise schedule's); convert an old checkpoint once with "
                             "scripts/convert_checkpoints.py")
        if unknown:
            raise ValueError(f"unknown AutoencoderConfig fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


class Encoder(nn.Module):
    """x (B, 3, H, W) -> the mean and log-variance of q(z | x), each (B, latent_channels, H / f, W / f)."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        channels = config.channels
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], kernel_size=3, padding=1)
        layers, c = [], channels[0]
        for level, width in enumerate(channels):
            if level > 0:
                layers.append(Downsample(c))
            for _ in range(config.blocks_per_level):
                layers.append(ResBlock(c, width, None, config.groups, dropout=0.0))
                c = width
        self.blocks = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(config.groups, c)
        self.conv_out = nn.Conv2d(c, 2 * config.latent_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.blocks(self.conv_in(x))  # (B, 3, H, W) -> (B, channels[-1], H / f, W / f)
        moments = self.conv_out(F.silu(self.norm_out(h)))  # -> (B, 2 * latent_channels, H / f, W / f)
        mean, logvar = moments.chunk(2, dim=1)  # -> 2 x (B, latent_channels, H / f, W / f)
        return mean, logvar.clamp(-30.0, 20.0)  # keeps exp(logvar) finite early in training


class Decoder(nn.Module):
    """z (B, latent_channels, h, w) -> x (B, 3, h * f, w * f): the encoder's mirror image (its own widths, when
    config.decoder_channels gives them)."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        channels = config.decoder_widths
        c = channels[-1]
        self.conv_in = nn.Conv2d(config.latent_channels, c, kernel_size=3, padding=1)
        layers = []
        for level in reversed(range(len(channels))):
            for _ in range(config.blocks_per_level):
                layers.append(ResBlock(c, channels[level], None, config.groups, dropout=0.0))
                c = channels[level]
            if level > 0:
                layers.append(Upsample(c))
        self.blocks = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(config.groups, c)
        self.conv_out = nn.Conv2d(c, config.in_channels, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.conv_in(z))  # (B, latent_channels, h, w) -> (B, channels[0], h * f, w * f)
        return self.conv_out(F.silu(self.norm_out(h)))  # -> (B, 3, h * f, w * f)


class Autoencoder(nn.Module):
    """encode: image -> Gaussian over latents; decode: latent -> image. Images are in [-1, 1]."""

    def __init__(self, config: AutoencoderConfig | None = None):
        super().__init__()
        self.config = config or AutoencoderConfig()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)

    def check_images(self, x: torch.Tensor) -> None:
        f, c = self.config.downsampling, self.config.in_channels
        if x.ndim != 4 or x.shape[1] != c or x.shape[2] % f or x.shape[3] % f:
            raise ValueError(f"images must be (B, {c}, H, W) with H and W divisible by {f}, got {tuple(x.shape)}; "
                             "convert uint8 images with minidiff.data.pixels.to_model")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, H, W) -> mean, logvar (B, latent_channels, H / f, W / f)."""
        self.check_images(x)
        return self.encoder(x)

    def encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic encoding: the mean of q(z | x), (B, latent_channels, H / f, W / f)."""
        return self.encode(x)[0]

    def encode_sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A latent drawn from q(z | x) with the reparameterisation trick (Kingma & Welling 2014, sec. 2.4)."""
        mean, logvar = self.encode(x)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device)
        # $z = \mu + \sigma \odot \epsilon, \quad \sigma = \exp(\tfrac12 \log\sigma^2)$
        return mean + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_channels, h, w) -> images (B, 3, h * f, w * f), roughly in [-1, 1] (not clipped)."""
        if z.ndim != 4 or z.shape[1] != self.config.latent_channels:
            raise ValueError(f"latents must be (B, {self.config.latent_channels}, h, w), got {tuple(z.shape)}")
        return self.decoder(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None, noise: torch.Tensor | None = None):
        """x -> (reconstruction from a sampled latent, mean, logvar): what training needs. The latent's noise is
        drawn from `generator`, or given as `noise` (B, latent_channels, H / f, W / f)."""
        mean, logvar = self.encode(x)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device) if noise is None else noise
        z = mean + torch.exp(0.5 * logvar) * eps  # the reparameterisation, as in encode_sample
        return self.decode(z), mean, logvar


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    r"""KL(N(mean, exp(logvar)) || N(0, I)) per image, summed over its latent entries: (B, C, h, w) -> (B,)."""
    # Kingma & Welling 2014, appendix B: $-D_{KL} = \tfrac12 \sum_j (1 + \log\sigma_j^2 - \mu_j^2 - \sigma_j^2)$
    return 0.5 * (mean ** 2 + logvar.exp() - 1.0 - logvar).flatten(1).sum(dim=1)


def vae_loss(autoencoder: Autoencoder, x: torch.Tensor, generator: torch.Generator | None = None,
             noise: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    r"""The training loss $\mathcal L = \mathrm{rec}(x, \mathcal D(z)) + \kappa\, D_{KL}$, and its parts as numbers.

    rec is the per-pixel mean squared (l2) or absolute (l1) error; the KL is per image, averaged over the batch.
    """
    reconstruction, mean, logvar = autoencoder(x, generator, noise)
    error = reconstruction - x
    rec = error.pow(2).mean() if autoencoder.config.reconstruction == "l2" else error.abs().mean()
    kl = kl_divergence(mean, logvar).mean()
    loss = rec + autoencoder.config.kl_weight * kl
    return loss, {"loss": loss.item(), "reconstruction": rec.item(), "kl": kl.item()}


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Peak signal-to-noise ratio per image (B,) in dB for images in [-1, 1]: $10 \log_{10}(2^2 / \mathrm{MSE})$.

    The same number as with uint8 images and a peak of 255: both scale the error and the peak alike.
    """
    mse = (x - y).pow(2).flatten(1).mean(dim=1)  # (B, C, H, W) -> (B,)
    return 10.0 * torch.log10(4.0 / mse.clamp(min=1e-12))


@torch.inference_mode()
def estimate_scale_factor(autoencoder: Autoencoder, images: torch.Tensor, batch_size: int = 500) -> float:
    r"""$\zeta = 1 / \mathrm{std}(\mu_{\mathcal E}(x))$ over `images` (N, 3, H, W): scaled latents have unit variance.

    Rombach et al. 2022, sec. 4.3.2 / appendix G; one number for all latent entries, as in Stable Diffusion.
    """
    means = torch.cat([autoencoder.encode_mean(batch) for batch in images.split(batch_size)])
    return 1.0 / means.std().item()


LATENT_SIZE = 8  # a 32 x 32 image is 8 x 8 in latent space: the autoencoder downsamples twice by 2


@torch.inference_mode()
def encode_images(autoencoder: Autoencoder, images: torch.Tensor, scale_factor: float,
                  batch_size: int = 500) -> torch.Tensor:
    r"""Images (N, 3, 32, 32) in [-1, 1] -> scaled latents (N, 4, 8, 8): $z = \zeta\, \mu_{\mathcal E}(x)$.

    The encoder's mean, not a sample: the latent the decoder reconstructs best. A progress bar for big sets.
    """
    device = next(autoencoder.parameters()).device
    batches = images.split(batch_size)
    latents = [autoencoder.encode_mean(batch.to(device)).cpu() for batch in tqdm(batches, desc="encoding",
                                                                                  disable=len(batches) < 4)]
    return torch.cat(latents) * scale_factor  # (N, 4, 8, 8)


@torch.inference_mode()
def decode_latents(autoencoder: Autoencoder, z0: torch.Tensor, scale_factor: float) -> torch.Tensor:
    r"""Scaled latents (N, 4, 8, 8) -> images (N, 3, 32, 32) in [-1, 1]: $\tilde x = \mathcal D(z / \zeta)$, clipped."""
    device = next(autoencoder.parameters()).device
    return autoencoder.decode(z0.to(device) / scale_factor).clamp(-1, 1)


def reconstruct(model: Autoencoder, images: torch.Tensor) -> torch.Tensor:
    """The deterministic round trip decode(encode_mean(x)) of images (N, 3, H, W) in [-1, 1], clipped to [-1, 1],
    in batches of 250: all that the autoencoder keeps of each image (Rombach et al. 2022, sec. 3)."""
    with torch.inference_mode():
        return torch.cat([model.decode(model.encode_mean(batch)).clamp(-1, 1) for batch in images.split(250)])
