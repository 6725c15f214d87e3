"""The Generate box of the text-to-image chapters, on a tiny words model and a tiny byte-pair (emoji) model: each
token gets its attention map, Generate replaces the step view, a prompt the model cannot read is said whole and
takes the old picture away, and the book holds the precomputed steps."""

import ipywidgets
import pytest
from IPython.display import HTML
from support.widgets import embedded_frames, find

from minidiff.nets.bpe import emoji_tokenizer
from minidiff.nets.conditioning import EncoderConfig
from minidiff.pipeline import TextToImage
from minidiff.views import controls, generate


@pytest.fixture(scope="module")
def pipes(tiny_text_model, tiny_emoji_model):
    return {"words": TextToImage.load(tiny_text_model), "emoji": TextToImage.load(tiny_emoji_model[0])}


@pytest.mark.parametrize("kind, prompt, first_tokens", [
    ("words", "a red circle", ["<start>", "a", "red", "circle"]),
    ("emoji", "red apple", ["<start>"] + [piece.replace("</w>", "_") for word in ("red", "apple")
                                          for piece in emoji_tokenizer().split_word(word)]),
])
def test_each_token_of_the_prompt_gets_its_attention_map(pipes, kind, prompt, first_tokens):
    pipe = pipes[kind]
    generation = pipe(prompt, steps=3, keep_trajectory=True, attention=True)
    encoder = EncoderConfig(**pipe.info.encoder)
    assert [label for _, label in generate.shown_tokens(generation, encoder)] == first_tokens
    fig = generate.step_frame(generation, 2, encoder)
    titles = [ax.get_title() for ax in fig.axes]
    assert all(any(title.startswith(f"{token}: ") for title in titles) for token in first_tokens)
    assert "step 3 of 3" in fig._suptitle.get_text()


def test_generate_replaces_the_step_view_and_an_unreadable_prompt_takes_it_away(pipes, live_widgets):
    view = generate.generation_view(pipes["emoji"], "red apple", seed=0, steps=3)
    assert "minidiff-main" in view._dom_classes
    (prompt_box,) = find(view, ipywidgets.Text)
    (button,) = find(view, ipywidgets.Button)
    (bar,) = find(view, ipywidgets.IntProgress)
    first = view.children[1]
    prompt_box.value = "grinning face"
    button.click()
    assert view.children[1] is not first and bar.value == bar.max == 3
    assert any("grinning face" in w.value and "s" in w.value for w in find(view, ipywidgets.HTML))  # said, timed
    prompt_box.value = "☃☃"
    with pytest.warns(UserWarning):
        button.click()
    message = [w for w in find(view, ipywidgets.HTML) if "no picture" in w.value]
    assert message and "holds no character the tokenizer knows" in message[0].value
    assert find(view.children[1], ipywidgets.Image) == []  # the old picture is gone


def test_the_book_holds_the_precomputed_steps(pipes, book_widgets):
    view = generate.generation_view(pipes["words"], "a red circle", seed=0, steps=3)
    assert isinstance(view, HTML) and len(embedded_frames(view.data)) == 3
    assert controls.book_mode()
