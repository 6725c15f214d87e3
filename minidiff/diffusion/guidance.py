r"""Classifier-free guidance: push each prediction away from the unconditional one, towards the condition.

Papers followed:
- Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", eq. (6): one network trained with the condition
  sometimes dropped (`minidiff.training.loop.conditioning_inputs`) predicts both eps(x_t, c) and eps(x_t);
  sampling uses eps_uncond + w (eps_cond - eps_uncond). Their w is our guidance - 1 (see docs/notation.md):
  here w = 1 is plain conditional sampling, w = 0 unconditional, w > 1 exaggerates the condition.
- Lin, Liu, Li & Yang 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed", sec. 3.4 and
  Algorithm 2: guidance rescale. A large w inflates the guided prediction's standard deviation (over-exposed
  images); rescaling it back to the conditional prediction's, mixed in by psi = `rescale` (the paper's phi), undoes
  that.

The guided denoiser has the same shape as `minidiff.diffusion.loop.model_denoiser`, so every sampler takes it.
It runs the network once per call on a batch of 2B, [conditional; unconditional], which samplers count as
one network evaluation (NFE); it costs about as much as two plain ones.

Guidance acts on the network's raw output, whatever it predicts (eps, x0 or v). Without rescale this is the
same as guiding eps: at fixed (x_t, t), eps, x0 and v are affine functions of one another,
e.g. eps = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v, and an affine map commutes with
u + w (c - u) = (1 - w) u + w c, whose weights sum to 1. Rescale (a ratio of standard deviations) does depend on
the space: like Lin et al., who trained with v, we apply it to the raw output.
"""

import warnings
from collections.abc import Callable

import torch
from torch import nn

from minidiff.diffusion.arguments import real_number, same_batch


def classifier_free_guidance(output_cond: torch.Tensor, output_uncond: torch.Tensor, guidance: float,
                             rescale: float = 0.0) -> torch.Tensor:
    r"""Combine a conditional and an unconditional prediction (B, ...) with guidance scale w and rescale psi."""
    # Ho & Salimans 2022, eq. (6), with their 1 + w written as our w:
    # $\tilde\epsilon = \epsilon_\theta(x_t) + w\,(\epsilon_\theta(x_t, c) - \epsilon_\theta(x_t))$
    guided = output_uncond + guidance * (output_cond - output_uncond)
    if rescale == 0.0:
        return guided
    # Lin et al. 2023, sec. 3.4, per sample: the standard deviations $\mathrm{std}(x_{pos})$ and $\mathrm{std}(x_{cfg})$
    dims = tuple(range(1, guided.ndim))
    std_cond = output_cond.std(dim=dims, keepdim=True)  # (B, ...) -> (B, 1, ..., 1)
    std_guided = guided.std(dim=dims, keepdim=True)  # (B, ...) -> (B, 1, ..., 1)
    # $x_{rescaled} = x_{cfg} \cdot \mathrm{std}(x_{pos}) / \mathrm{std}(x_{cfg})$
    rescaled = guided * (std_cond / std_guided)
    # $x_{final} = \psi\, x_{rescaled} + (1 - \psi)\, x_{cfg}$
    return rescale * rescaled + (1.0 - rescale) * guided


def check_guidance(guidance: float | None, rescale: float = 0.0) -> tuple[float | None, float]:
    """The guidance scale w (None: off) and the rescale psi, checked: w a finite number, psi in [0, 1] and only
    with guidance. A negative w is allowed but warned about: it pushes every prediction away from the condition."""
    rescale = real_number("rescale", rescale, 0.0, 1.0, what="guidance rescale psi, 0 = off; Lin et al. 2023 use 0.7")
    if guidance is None:
        if rescale != 0.0:
            raise ValueError(f"rescale = {rescale} acts on guidance: give a guidance scale as well (e.g. 3), or leave "
                             "rescale at 0")
        return None, rescale
    guidance = real_number("guidance", guidance, what="w: 0 = unconditional, 1 = conditional, > 1 stronger")
    if guidance < 0:
        warnings.warn(f"guidance = {guidance} < 0 pushes each prediction away from the condition, past the "
                      "unconditional one (w = 0): the images avoid the prompt or label", stacklevel=3)
    return guidance, rescale


def null_class_labels(model: nn.Module, class_labels: torch.Tensor) -> torch.Tensor:
    """The unconditional labels: the null class, index num_classes, that training drops labels to
    (`minidiff.training.loop.conditioning_inputs`)."""
    if getattr(model, "config", None) is None or model.config.num_classes is None:
        raise ValueError("class-label guidance needs a class-conditional model (config.num_classes set); "
                         "this model has no classes, so leave out class_labels and --guidance")
    return torch.full_like(class_labels, model.config.num_classes)


def paired_context(context: torch.Tensor, context_mask: torch.Tensor | None, null_context: torch.Tensor | None,
                   null_context_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[context; null_context] (2B, L, D) and their masks (2B, L), or None when neither has a mask.

    null_context is the encoding of the empty caption, (B, L, D) or (1, L, D) for all samples alike.
    """
    if null_context is None:
        raise ValueError("text guidance needs null_context: the context of the empty caption (the unconditional "
                         "input the model was trained with), shaped (1, L, D) or like context")
    B, L, D = context.shape
    if null_context.ndim != 3 or null_context.shape[1:] != (L, D) or null_context.shape[0] not in (1, B):
        raise ValueError(f"null_context must be (1, {L}, {D}) or ({B}, {L}, {D}) like context, got "
                         f"{tuple(null_context.shape)}; pad both captions to the same number of tokens")
    contexts = torch.cat([context, null_context.expand(B, L, D)])  # (B, L, D) + (B, L, D) -> (2B, L, D)
    if context_mask is None and null_context_mask is None:
        return contexts, None
    all_real = torch.ones(B, L, dtype=torch.bool, device=context.device)  # no mask = every token is real
    mask = all_real if context_mask is None else context_mask
    null_mask = all_real if null_context_mask is None else null_context_mask.expand(B, L)
    return contexts, torch.cat([mask, null_mask])  # (B, L) + (B, L) -> (2B, L)


def guided_denoiser(model: nn.Module, guidance: float, class_labels: torch.Tensor | None = None,
                    context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None,
                    null_context: torch.Tensor | None = None, null_context_mask: torch.Tensor | None = None,
                    rescale: float = 0.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A denoiser(x_t, t) that returns the classifier-free guided output of `model`, for any sampler.

    guidance: w (1 = plain conditional, 0 = unconditional). The condition is class_labels (B,) (their
    unconditional twin is the null class) and/or a text context (B, L, D) with context_mask (B, L)
    (its twin is null_context, the empty caption's encoding). rescale: psi in [0, 1] (Lin et al. 2023; 0 = off).
    Each call is one forward pass of the network on 2B samples: one NFE.
    """
    if class_labels is None and context is None:
        raise ValueError("guidance needs a condition to guide towards: give class_labels and/or context")
    guidance, rescale = check_guidance(guidance, rescale)
    if guidance is None:
        raise ValueError("guided_denoiser needs a guidance scale w (a number, e.g. 3); for plain conditional "
                         "sampling use minidiff.diffusion.loop.model_denoiser")
    labels = None
    if class_labels is not None:
        labels = torch.cat([class_labels, null_class_labels(model, class_labels)])  # (B,) + (B,) -> (2B,)
    contexts, masks = None, None
    if context is not None:
        contexts, masks = paired_context(context, context_mask, null_context, null_context_mask)

    def denoiser(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        same_batch("class_labels", class_labels, x_t)
        same_batch("context", context, x_t)
        # one forward pass for both predictions: [conditional; unconditional]
        x_pair, t_pair = torch.cat([x_t, x_t]), torch.cat([t, t])  # (B, C, H, W) -> (2B, C, H, W); (B,) -> (2B,)
        output = model(x_pair, t_pair, class_labels=labels, context=contexts, context_mask=masks)  # (2B, C, H, W)
        output_cond, output_uncond = output.chunk(2)  # (2B, C, H, W) -> 2 x (B, C, H, W)
        return classifier_free_guidance(output_cond, output_uncond, guidance, rescale)
    return denoiser
