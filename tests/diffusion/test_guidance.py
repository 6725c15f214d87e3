"""Classifier-free guidance: its end points, one batched pass, the rescale, every prediction type, every sampler."""

import pytest
import torch
from support.tiny import tiny_unet

from minidiff.diffusion.forward import PREDICTIONS, x0_and_eps_from_output
from minidiff.diffusion.guidance import classifier_free_guidance, guided_denoiser
from minidiff.diffusion.loop import model_denoiser
from minidiff.diffusion.samplers import SAMPLERS
from minidiff.diffusion.schedule import make_schedule


def inputs(B=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(B, 1, 8, 8, generator=generator), torch.tensor([999, 500, 3])[:B]


class CountingModel(torch.nn.Module):
    """Wraps a model and records the batch size of every forward pass."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config, self.batch_sizes = model, model.config, []

    def forward(self, x_t, t, **conditioning):
        self.batch_sizes.append(len(x_t))
        return self.model(x_t, t, **conditioning)


# ------------------------------------------------------------------ the formula


def test_guidance_1_is_the_conditional_prediction_0_the_unconditional_and_it_is_linear_in_w():
    generator = torch.Generator().manual_seed(1)
    cond, uncond = torch.randn(2, 1, 4, 4, generator=generator), torch.randn(2, 1, 4, 4, generator=generator)
    torch.testing.assert_close(classifier_free_guidance(cond, uncond, 1.0), cond)
    torch.testing.assert_close(classifier_free_guidance(cond, uncond, 0.0), uncond)
    # w = 3 is Ho & Salimans' w = 2: $(1 + w) \epsilon(x_t, c) - w\, \epsilon(x_t)$
    torch.testing.assert_close(classifier_free_guidance(cond, uncond, 3.0), 3 * cond - 2 * uncond)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_guiding_the_raw_output_is_guiding_eps_and_x0(prediction):
    """eps, x0 and v are affine in one another at fixed (x_t, t), so guidance commutes with reading them."""
    generator = torch.Generator().manual_seed(2)
    x_t, cond, uncond = (torch.randn(2, 1, 4, 4, generator=generator, dtype=torch.float64) for _ in range(3))
    alpha_bar, w = 0.3, 4.0
    guided = classifier_free_guidance(cond, uncond, w)
    x0_guided, eps_guided = x0_and_eps_from_output(prediction, guided, x_t, alpha_bar)
    (x0_cond, eps_cond), (x0_uncond, eps_uncond) = (x0_and_eps_from_output(prediction, output, x_t, alpha_bar)
                                                    for output in (cond, uncond))
    torch.testing.assert_close(eps_guided, eps_uncond + w * (eps_cond - eps_uncond))
    torch.testing.assert_close(x0_guided, x0_uncond + w * (x0_cond - x0_uncond))


def test_rescale_brings_each_samples_std_back_to_the_conditional_one_and_psi_mixes():
    """Lin et al. 2023, sec. 3.4: psi = 1 gives the guided prediction the conditional prediction's standard deviation
    (per sample), psi = 0 is plain guidance, in between a linear mix of the two."""
    generator = torch.Generator().manual_seed(3)
    cond = torch.randn(4, 2, 5, 5, generator=generator, dtype=torch.float64)
    uncond = 0.5 * torch.randn(4, 2, 5, 5, generator=generator, dtype=torch.float64)
    plain = classifier_free_guidance(cond, uncond, 7.0)
    full = classifier_free_guidance(cond, uncond, 7.0, rescale=1.0)
    per_sample_std = lambda x: x.flatten(1).std(dim=1)  # (B, C, H, W) -> (B,)
    assert (per_sample_std(plain) > 2 * per_sample_std(cond)).all()  # the over-exposure that rescale removes
    torch.testing.assert_close(per_sample_std(full), per_sample_std(cond))
    torch.testing.assert_close(full / plain, (per_sample_std(cond) / per_sample_std(plain)).reshape(-1, 1, 1, 1)
                               .expand_as(full))  # a rescale: each sample multiplied by one number
    torch.testing.assert_close(classifier_free_guidance(cond, uncond, 7.0, rescale=0.0), plain)
    torch.testing.assert_close(classifier_free_guidance(cond, uncond, 7.0, rescale=0.7), 0.7 * full + 0.3 * plain)


# ------------------------------------------------------------------ the guided denoiser


def test_class_guidance_end_points_are_the_models_own_predictions_from_one_batched_pass():
    model = CountingModel(tiny_unet(num_classes=10))
    x_t, t = inputs()
    labels = torch.tensor([3, 7, 0])
    with torch.no_grad():
        conditional = model(x_t, t, class_labels=labels)
        unconditional = model(x_t, t, class_labels=torch.full((3,), 10))  # the null class
        model.batch_sizes.clear()
        guided_1 = guided_denoiser(model, 1.0, class_labels=labels)(x_t, t)
        guided_0 = guided_denoiser(model, 0.0, class_labels=labels)(x_t, t)
        guided_4 = guided_denoiser(model, 4.0, class_labels=labels)(x_t, t)
    assert model.batch_sizes == [6, 6, 6]  # one forward pass of 2B per call
    torch.testing.assert_close(guided_1, conditional, atol=1e-5, rtol=1e-5)  # batches of 2B and B round alike, nearly
    torch.testing.assert_close(guided_0, unconditional, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(guided_4, unconditional + 4 * (conditional - unconditional), atol=1e-4, rtol=1e-4)


def test_text_guidance_pairs_each_caption_with_the_empty_one():
    model = tiny_unet(context_dim=12)
    x_t, t = inputs()
    generator = torch.Generator().manual_seed(4)
    context, null_context = torch.randn(3, 5, 12, generator=generator), torch.randn(1, 5, 12, generator=generator)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]).bool()
    null_mask = torch.tensor([[1, 1, 0, 0, 0]]).bool()
    with torch.no_grad():
        conditional = model(x_t, t, context=context, context_mask=mask)
        unconditional = model(x_t, t, context=null_context.expand(3, -1, -1), context_mask=null_mask.expand(3, -1))
        guided = {w: guided_denoiser(model, w, context=context, context_mask=mask, null_context=null_context,
                                     null_context_mask=null_mask)(x_t, t) for w in (0.0, 1.0)}
    torch.testing.assert_close(guided[1.0], conditional, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(guided[0.0], unconditional, atol=1e-5, rtol=1e-5)


def test_guided_denoiser_errors_say_what_to_give():
    with pytest.raises(ValueError, match="give class_labels and/or context"):
        guided_denoiser(tiny_unet(num_classes=10), 3.0)
    with pytest.raises(ValueError, match="needs a class-conditional model"):
        guided_denoiser(tiny_unet(), 3.0, class_labels=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="needs null_context"):
        guided_denoiser(tiny_unet(context_dim=12), 3.0, context=torch.randn(3, 5, 12))
    with pytest.raises(ValueError, match="pad both captions to the same number of tokens"):
        guided_denoiser(tiny_unet(context_dim=12), 3.0, context=torch.randn(3, 5, 12),
                        null_context=torch.randn(1, 4, 12))
    with pytest.raises(ValueError, match=r"rescale must be a number in \[0.0, 1.0\]"):
        guided_denoiser(tiny_unet(num_classes=10), 3.0, class_labels=torch.tensor([1, 2, 3]), rescale=2.0)


# ------------------------------------------------------------------ with every sampler


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_takes_the_guided_denoiser_at_one_evaluation_per_batched_pass(name):
    """guidance = 1 samples what plain conditional sampling does; a larger w samples something else, at the same
    NFE (each evaluation is one pass of 2B)."""
    schedule = make_schedule("cosine", 100)
    model = tiny_unet(num_classes=10)
    labels = torch.tensor([3, 7])

    def draw(denoiser):
        trajectory = []
        x = SAMPLERS[name](denoiser, (2, 1, 8, 8), schedule, "eps", steps=5, generator=torch.Generator().manual_seed(0),
                           callback=trajectory.append)
        return x, trajectory[-1].nfe

    plain, plain_nfe = draw(model_denoiser(model, class_labels=labels))
    same, same_nfe = draw(guided_denoiser(model, 1.0, class_labels=labels))
    strong, strong_nfe = draw(guided_denoiser(model, 5.0, class_labels=labels, rescale=0.7))
    torch.testing.assert_close(same, plain, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(strong, plain, atol=1e-2)
    assert plain_nfe == same_nfe == strong_nfe
