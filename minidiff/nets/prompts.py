"""From a prompt to the token ids a model's encoder reads, whatever the encoder (`EncoderConfig.kind`):

- "attributes" (chapter 09): the Shapes attributes the prompt names (`minidiff.data.shapes.caption_attributes`);
- "text" (the Shapes text model): its words (`minidiff.nets.text.tokenize_batch`);
- "clip" (the emoji model, on a frozen CLIP's text tower): its byte-pair pieces (`minidiff.nets.bpe`), the
  tokenizer the CLIP was trained with.

The pipeline and the training data both tokenize here, so a model meets at sampling time the tokens it was
trained on.
"""

import torch

from minidiff.data.shapes import caption_attributes
from minidiff.nets.bpe import emoji_tokenizer
from minidiff.nets.conditioning import ATTRIBUTE_VOCABULARY, EncoderConfig, attribute_tokens
from minidiff.nets.text import VOCABULARY, tokenize_batch


def prompt_tokens(prompts: list[str], config: EncoderConfig, unknown: str = "error") -> torch.Tensor:
    """Prompts -> the token ids (N, config.length) the encoder of `config` reads: the attributes a prompt names
    (kind "attributes"), its words (kind "text"; unknown words: an error or, unknown="drop", dropped), or its
    byte-pair pieces (kind "clip"; characters the tokenizer never saw are dropped with a warning)."""
    if config.kind == "attributes":
        return attribute_tokens([caption_attributes(prompt) for prompt in prompts])
    if config.kind == "clip":
        return emoji_tokenizer().encode_batch(list(prompts), config.length)
    return tokenize_batch(prompts, unknown, max_length=config.length)


def token_names(ids: torch.Tensor | list[int], config: EncoderConfig) -> list[str]:
    """Token ids (L,) -> what each id stands for, as `prompt_tokens` made them for the encoder of `config`: a word, an
    attribute value or a byte-pair piece ("fox</w>"), with "<start>" and "<pad>" named too (for labels on pictures)."""
    if config.kind == "attributes":
        vocabulary = ATTRIBUTE_VOCABULARY
    elif config.kind == "clip":
        vocabulary = emoji_tokenizer().vocabulary
    else:
        vocabulary = VOCABULARY
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    if any(not 0 <= i < len(vocabulary) for i in ids):
        raise ValueError(f"ids must lie in 0 ... {len(vocabulary) - 1} for an encoder of kind {config.kind!r}")
    return [vocabulary[i] for i in ids]
