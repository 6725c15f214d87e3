"""Interactive views for the chapters: a slider over steps (with a Play button) or a few drop-downs, showing a figure.

Each frame is a matplotlib figure (from `minidiff.views.plots`) rendered to PNG bytes and shown in an
`ipywidgets.Image` at its own pixel size (`minidiff.views.controls.picture`: never stretched, never blurred), which
works in JupyterLab without ipympl. A frame is drawn the first time it is asked for and then cached, so moving back
over frames already seen is instant; while a new one is drawn, the old one is faded and a message says what is drawn.
A slider reads the value the learner cares about (the guidance scale, the timestep, "step 3 of 20"), not its index.

Static mode, for the HTML book that has no kernel: with MINIDIFF_BOOK=1 in the environment, every builder returns
an `IPython.display.HTML` player instead. It holds a fixed set of frames drawn in advance, embedded in the page
by matplotlib's `FuncAnimation.to_jshtml`, with a slider and play buttons that need no external script or font.

Two general builders carry both modes: `scrubber` (a slider over steps) and `chooser` (drop-downs over options);
`step_scrubber` wraps `scrubber` for a list of image batches, e.g. a denoising trajectory.
"""

import functools
import io
import itertools
import re
from collections.abc import Callable, Sequence

import ipywidgets
import numpy as np
import torch
from IPython.display import HTML
from matplotlib.animation import FuncAnimation
from matplotlib.figure import Figure
from PIL import Image

from minidiff.data.digits import mnist5k
from minidiff.data.photo import photo
from minidiff.data.pixels import to_model
from minidiff.data.shapes import shapes
from minidiff.diffusion.forward import q_sample
from minidiff.diffusion.schedule import NoiseSchedule, make_schedule
from minidiff.views import plots

# BOOK_ENV and book_mode are asked of this module by the chapters and the tests, so they are imported here too.
from minidiff.views.controls import BOOK_ENV, book_mode, busy, message_area, picture, show_png, style  # noqa: F401

DPI = 72  # frames are drawn at this resolution: sharp enough, and quick to draw on a small CPU
CACHE_FRAMES = 256  # at most this many rendered frames (about 90 kB each) are kept per widget
BOOK_FRAMES = 21  # frames a static player holds for a long slider (each adds about 100 kB to the page)
BUTTON_GLYPHS = {  # font-awesome icon -> a plain character, so the static player needs no web font
    "minus": "&minus;", "fast-backward": "&#x21E4;", "step-backward": "&lsaquo;", "pause": "&#x275A;&#x275A;",
    "play": "&#x25B6;", "step-forward": "&rsaquo;", "fast-forward": "&#x21E5;", "plus": "+",
}
SCHEDULE_CHOICES = {  # the schedules chapter 02 compares: label -> (name, zero_terminal_snr)
    "linear": ("linear", False),
    "cosine": ("cosine", False),
    "sigmoid": ("sigmoid", False),
    "linear, zero terminal SNR": ("linear", True),
}


def figure_png(fig: Figure, dpi: int = DPI) -> bytes:
    """Render a figure to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def without_web_font(html: str) -> str:
    """Make matplotlib's jshtml player self-contained: drop its font-awesome <link>, draw its buttons as characters."""
    html = re.sub(r"<link[^>]*font-awesome[^>]*>", "", html)
    play_backwards = r'<i class="fa fa-play fa-flip-horizontal"></i>'
    html = html.replace(play_backwards, "&#x25C0;")
    return re.sub(r'<i class="fa fa-([a-z-]+)"></i>', lambda match: BUTTON_GLYPHS.get(match[1], match[1]), html)


def html_player(frames: list[bytes], fps: float = 3.0) -> HTML:
    """A static player for PNG frames: `FuncAnimation.to_jshtml` with every frame embedded, no kernel needed.

    Each PNG is shown full-size in a figure of exactly its pixel size, so the player re-encodes it unchanged.
    """
    pictures = [np.asarray(Image.open(io.BytesIO(frame)).convert("RGB")) for frame in frames]
    height, width = pictures[0].shape[:2]
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    shown = ax.imshow(pictures[0], interpolation="nearest")

    def show_frame(index: int):
        shown.set_data(pictures[index])
        return (shown,)

    animation = FuncAnimation(fig, show_frame, frames=len(pictures), interval=1000 / fps, repeat=False)
    return HTML(without_web_font(animation.to_jshtml(default_mode="once")))


def book_player(draw: Callable[..., Figure], keys: Sequence[tuple]) -> HTML:
    """Draw the figure for each key (the arguments of draw) in advance and return one static HTML player."""
    return html_player([figure_png(draw(*key)) for key in keys])


class Frames:
    """The PNG of draw(*key) for each key, drawn on first request and kept (the CACHE_FRAMES latest)."""

    def __init__(self, draw: Callable[..., Figure]) -> None:
        self.draw, self.pngs = draw, {}

    def __contains__(self, key: tuple) -> bool:
        return key in self.pngs

    def __call__(self, *key) -> bytes:
        if key not in self.pngs:
            if len(self.pngs) >= CACHE_FRAMES:
                self.pngs.pop(next(iter(self.pngs)))  # the oldest
            self.pngs[key] = figure_png(self.draw(*key))
        return self.pngs[key]


def show_frame(image: ipywidgets.Image, message: ipywidgets.HTML, frames: Frames, key: tuple, doing: str) -> None:
    """Show frames(*key) in image; if it must be drawn first, fade the old picture and say `doing` meanwhile."""
    if key in frames:
        show_png(image, frames(*key))
        return
    with busy(image, message, doing):
        show_png(image, frames(*key))


def scrubber(draw: Callable[[int], Figure], n_steps: int, labels: Sequence[str] | None = None,
             description: str = "step", values: Sequence | None = None, start: int = 0, interval_ms: int = 300,
             play_frames: int = 50, book_frames: int = BOOK_FRAMES) -> ipywidgets.VBox | HTML:
    """Scrub through the figures draw(0) ... draw(n_steps - 1) with a slider and a Play button.

    At position i the slider reads values[i]: the value the learner cares about, e.g. the guidance scale 3 or the
    timestep 999 (default "i + 1 of n_steps", counted from 1 as the frames' titles count steps). labels[i], if
    given, says more beside it (e.g. "t = 999"). The slider opens at position `start` (n_steps - 1 for a finished
    sampling run). The picture follows when the slider is let go, stepped with the arrow keys, or moved by Play
    (about n_steps / play_frames steps at a time): redrawing on every pixel of a drag would queue up frames on a
    small CPU. In book mode: a static player of book_frames frames spread evenly over the steps.
    """
    values = [f"{i + 1} of {n_steps}" for i in range(n_steps)] if values is None else [str(v) for v in values]
    for name, given in (("labels", labels), ("values", values)):
        if given is not None and len(given) != n_steps:
            raise ValueError(f"got {len(given)} {name} for {n_steps} steps; give one label per step")
    if not 0 <= start < n_steps:
        raise ValueError(f"start must be a position 0 ... {n_steps - 1}, got {start}")
    if book_mode():
        return book_player(draw, [(i,) for i in plots.evenly_spaced_steps(n_steps, book_frames)])

    frames = Frames(draw)
    slider = ipywidgets.SelectionSlider(options=list(zip(values, range(n_steps))), value=start,
                                        description=description, continuous_update=False,
                                        style={"description_width": "initial"}, layout=ipywidgets.Layout(width="60%"))
    play = ipywidgets.Play(value=start, min=0, max=n_steps - 1, step=max(1, n_steps // play_frames),
                           interval=interval_ms)
    ipywidgets.jslink((play, "value"), (slider, "index"))  # the browser moves the slider as Play runs
    label = ipywidgets.Label(labels[start] if labels is not None else "")
    image, message = picture(frames(start)), message_area()

    def show(change: dict) -> None:
        label.value = labels[change["new"]] if labels is not None else ""
        show_frame(image, message, frames, (change["new"],), f"drawing {description} {values[change['new']]} ...")

    slider.observe(show, names="value")
    controls = [play, slider] + ([label] if labels is not None else [])
    return ipywidgets.VBox([style(), ipywidgets.HBox(controls), message, image])


def chooser(draw: Callable[..., Figure], options: dict[str, Sequence]) -> ipywidgets.VBox | HTML:
    """One drop-down per option; the figure draw(*chosen values) updates when any of them changes.

    options maps a name to its choices, e.g. {"schedule": ["linear", "cosine"], "T": [10, 1000]}; draw takes the
    chosen values in that order. While a new combination is drawn, the old picture is faded and a message says what
    is being drawn. In book mode: a static player stepping through every combination.
    """
    if book_mode():
        return book_player(draw, list(itertools.product(*options.values())))

    frames = Frames(draw)
    dropdowns = [ipywidgets.Dropdown(options=list(choices), description=name, style={"description_width": "initial"})
                 for name, choices in options.items()]
    image, message = picture(frames(*[d.value for d in dropdowns])), message_area()

    def show(change: dict) -> None:
        key = tuple(d.value for d in dropdowns)
        doing = "drawing " + ", ".join(f"{name} {value}" for name, value in zip(options, key)) + " ..."
        show_frame(image, message, frames, key, doing)

    for dropdown in dropdowns:
        dropdown.observe(show, names="value")
    return ipywidgets.VBox([style(), ipywidgets.HBox(dropdowns), message, image])


def step_scrubber(batches: Sequence[torch.Tensor], labels: Sequence[str] | None = None, ncols: int | None = None,
                  size: float = 1.2, description: str = "step") -> ipywidgets.VBox | HTML:
    """Scrub through a sequence of image batches, one (N, C, H, W) tensor per step, e.g. x_t along a sampler's path.

    Each frame is `plots.image_grid` of that step's batch, titled "step i + 1 of N" and its label (e.g. "t = 999").
    """
    n_steps = len(batches)

    def draw(i: int) -> Figure:
        title = f"{description} {i + 1} of {n_steps}" + ("" if labels is None else f": {labels[i]}")
        return plots.image_grid(batches[i], ncols=ncols, suptitle=title, size=size)

    return scrubber(draw, len(batches), labels=labels, description=description)


def forward_examples(n_digits: int = 6, n_shapes: int = 6, photo_size: int = 64) -> dict[str, torch.Tensor]:
    """The pictures chapter 01 sends to noise, as tensors in [-1, 1].

    Returns {"photo": (1, 3, size, size), "digits": the first MNIST-5k image of 0, 1, ... (n_digits, 1, 28, 28),
    "shapes": the first Shapes training images (n_shapes, 3, 32, 32)}.
    """
    digits, labels = mnist5k()
    if not 0 <= n_digits <= 10:
        raise ValueError(f"n_digits must be 0 ... 10 (one of each digit), got {n_digits}")
    first_of_each = [int(np.flatnonzero(labels == k)[0]) for k in range(n_digits)]
    shape_images, _, _ = shapes(n_shapes, split="train", seed=0)
    return {
        "photo": to_model(photo(photo_size)[None]),
        "digits": to_model(digits[first_of_each]),
        "shapes": to_model(shape_images),
    }


def forward_process_widget(schedule: NoiseSchedule | None = None, images: dict[str, torch.Tensor] | None = None,
                           seed: int = 0) -> ipywidgets.VBox | HTML:
    """Chapter 01: a slider over t showing x_t ~ q(x_t | x0) for each batch, alpha_bar and SNR at t, and a histogram.

    The histogram pools every pixel value shown and compares it with N(0, 1). One noise draw eps per image is
    fixed up front and reused for every t, so moving the slider shows one image fading into one noise pattern
    (default: the linear schedule, T = 1000; images from `forward_examples`).
    """
    schedule = make_schedule("linear", 1000) if schedule is None else schedule
    images = forward_examples() if images is None else images
    generator = torch.Generator().manual_seed(seed)
    eps = {name: torch.randn(x0.shape, generator=generator) for name, x0 in images.items()}

    def draw(t: int) -> Figure:
        x_t = {name: q_sample(schedule, x0, t, eps[name]) for name, x0 in images.items()}
        return plots.forward_frame(x_t, schedule, t)

    labels = [f"alpha_bar = {a:.4g}" for a in schedule.alpha_bar.tolist()]
    return scrubber(draw, schedule.T, labels=labels, description="t", values=range(schedule.T))


def schedule_widget(Ts: Sequence[int] = (25, 50, 100, 1000), images: dict[str, torch.Tensor] | None = None,
                    seed: int = 0) -> ipywidgets.VBox | HTML:
    """Chapter 02: pick a schedule and T; see its alpha_bar and log-SNR (the others faint) and x_t at several t.

    images maps a name to one image (1, C, H, W); by default the photo, one digit and one Shapes image.
    The same noise is used for every schedule and T, so only the schedule changes what you see.
    """
    if images is None:
        examples = forward_examples(n_digits=1, n_shapes=1, photo_size=32)
        images = {"photo": examples["photo"], "digit": examples["digits"], "shape": examples["shapes"]}
    generator = torch.Generator().manual_seed(seed)
    eps = {name: torch.randn(x0.shape, generator=generator) for name, x0 in images.items()}

    @functools.lru_cache(maxsize=None)
    def schedules_of_length(T: int) -> dict[str, NoiseSchedule]:
        return {label: make_schedule(name, T, zero_terminal_snr=zero_snr)
                for label, (name, zero_snr) in SCHEDULE_CHOICES.items()}

    def draw(label: str, T: int) -> Figure:
        others = schedules_of_length(T)
        return plots.schedule_frame(others[label], label, images, eps, others=others)

    return chooser(draw, {"schedule": list(SCHEDULE_CHOICES), "T": list(Ts)})
