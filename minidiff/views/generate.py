"""Watch a prompt become a picture: the Generate box of the text-to-image chapters.

`step_frame` draws one denoising step of a `minidiff.pipeline.Generation` kept with its trajectory and attention:
the latent z_t's four channels, the decoded prediction D(z0_hat / zeta), and for each token (a word, or a byte-pair
piece for a model on a CLIP's text tower) its cross-attention map laid over that prediction (Hertz et al. 2022).
`step_view` puts a step slider over those frames; `generation_view` adds a prompt box, a seed, a Generate button,
a progress bar and a message area above it. In the static book (MINIDIFF_BOOK=1) `generation_view` is the step
slider of the first prompt alone, drawn in advance.
"""

import ipywidgets
from matplotlib.figure import Figure

from minidiff.nets.conditioning import EncoderConfig
from minidiff.nets.prompts import token_names
from minidiff.pipeline import Generation, TextToImage
from minidiff.views import controls, plots, widgets

END_OF_WORD = "</w>"  # how a byte-pair piece that ends a word is written (`minidiff.nets.bpe`)


def shown_tokens(generation: Generation, encoder: EncoderConfig) -> list[tuple[int, str]]:
    """(position, label) of the first prompt's tokens that are not padding: <start>, then its words or pieces."""
    names = token_names(generation.tokens[0], encoder)
    return [(j, name.replace(END_OF_WORD, "_")) for j, name in enumerate(names) if name != "<pad>"]


def step_frame(generation: Generation, index: int, encoder: EncoderConfig, max_columns: int = 9) -> Figure:
    """One denoising step of the generation's first image: latent channels and decoded prediction on top, one
    attention map per token below (at most max_columns of them: a long prompt's last pieces are left out)."""
    step, maps = generation.trajectory[index], generation.attention[index][0]  # maps: (L, 32, 32)
    shown = shown_tokens(generation, encoder)[:max_columns]
    ncols = max(5, len(shown))
    fig = Figure(figsize=(0.85 * ncols, 2.6))  # 9 columns: 7.7 in, inside a notebook's column
    axes = fig.subplots(2, ncols, gridspec_kw={"hspace": 0.45, "wspace": 0.08, "left": 0.01, "right": 0.99,
                                              "top": 0.82, "bottom": 0.02})
    for ax in axes.flat:
        ax.set_axis_off()
    for channel in range(4):
        axes[0, channel].imshow(step.latent.x_t[0, channel].numpy(), cmap="RdBu_r", vmin=-3, vmax=3, interpolation="nearest")
        axes[0, channel].set_title(f"$z_t$ channel {channel}", fontsize=7)
    plots.show_image(axes[0, 4], step.x0_image[0], r"decoded $\hat z_0$")
    picture = plots.to_picture(step.x0_image[0])
    for ax, (j, label) in zip(axes[1], shown):
        ax.imshow(picture, interpolation="nearest")
        ax.imshow(maps[j].numpy(), cmap="magma", alpha=0.65, interpolation="nearest")  # each map on its own colour scale
        ax.set_title(f"{label}: {maps[j].mean():.0%}", fontsize=7)
    fig.suptitle(f"“{generation.prompts[0]}”   step {index + 1} of {len(generation.trajectory)}, "
                 f"t = {step.latent.t:g}", fontsize=9)
    return fig


def step_view(generation: Generation, encoder: EncoderConfig) -> ipywidgets.Widget:
    """A step slider (a static player in the book) over the generation's trajectory, opened on the finished picture."""
    n_steps = len(generation.trajectory)
    labels = [f"t = {step.latent.t:g}" for step in generation.trajectory]
    return widgets.scrubber(lambda i: step_frame(generation, i, encoder), n_steps, labels=labels,
                            description="step", start=n_steps - 1)


def generation_view(pipe: TextToImage, prompt: str, seed: int = 0, **settings) -> ipywidgets.Widget:
    """The Generate box over the step view of `prompt` (drawn now), for any text-to-image pipeline; settings go to
    every call of the pipeline (sampler, steps, guidance, negative_prompt ...). Each press of Generate replaces the
    step view; an error (a prompt the model cannot read) is said whole in the message area and the previous picture
    is taken away, so that it cannot pass for an answer to the new prompt. In the book: the step view alone."""
    encoder = EncoderConfig(**pipe.info.encoder)
    first = pipe(prompt, seed=seed, keep_trajectory=True, attention=True, **settings)
    steps_shown = step_view(first, encoder)
    if widgets.book_mode():
        return steps_shown
    prompt_box = ipywidgets.Text(value=prompt, description="prompt", layout=ipywidgets.Layout(width="32em"))
    seed_box = ipywidgets.IntText(value=seed, description="seed", style={"description_width": "initial"},
                                  layout=ipywidgets.Layout(width="10em"))  # room for a five-digit seed
    button = ipywidgets.Button(description="Generate", button_style="primary")
    bar = ipywidgets.IntProgress(value=0, min=0, max=len(first.trajectory), description="denoising",
                                 style={"description_width": "initial"}, layout=ipywidgets.Layout(width="24em"))
    message = controls.message_area()
    box = ipywidgets.VBox([controls.style(), ipywidgets.HBox([prompt_box, seed_box, button]), bar, message])
    view = ipywidgets.VBox([box, steps_shown])

    def advance(step) -> None:
        bar.value += 1

    def generate(_) -> None:
        bar.value = 0
        view.children[1].add_class(controls.STALE)  # faded until the new picture replaces it
        controls.say(message, f"drawing “{prompt_box.value}”, seed {seed_box.value} ...", "busy")
        try:
            generation = pipe(prompt_box.value, seed=seed_box.value, keep_trajectory=True, attention=True,
                              callback=advance, **settings)
        except ValueError as error:  # a prompt the model cannot read: say why
            controls.say(message, f"no picture: {error}", "error")
            view.children = (box, ipywidgets.VBox())  # the last prompt's picture, taken away
            return
        controls.say(message, f"“{prompt_box.value}”, seed {seed_box.value}: {generation.seconds:.1f} s")
        view.children = (box, step_view(generation, encoder))

    button.on_click(generate)
    view.add_class("minidiff-main")  # the widget the browser test operates (its step slider)
    return view
