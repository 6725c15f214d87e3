"""Checkpoints: weights in safetensors, and a JSON file beside them that says how they were made. No pickle.

A checkpoint is two files with one stem: `STEM.safetensors` (the tensors) and `STEM.json` (everything else,
plus the sha256 of the tensors file). Two kinds are stored this way:

- a model checkpoint (`save_checkpoint`, `load_model`): the weights a sampler uses and a `CheckpointInfo`
  (model config, diffusion settings, the command that trained it, seed, device, minutes, step, metrics).
  The shipped ones live in data/checkpoints/ (`mnist` -> data/checkpoints/mnist.json + .safetensors).
- a training state (`save_training_state`, `load_training_state`): all a run needs to resume exactly
  (online and EMA weights, optimizer state, RNG states, data order, loss history). Sampling never needs it.

Every file is written atomically (a temp file in the same folder, then `os.replace`), tensors first, JSON last.
Loading checks the sha256, so the JSON of one checkpoint is never used with the tensors of another, and a
truncated or corrupt file is reported by name.
"""

import torch


def resolve_device(name: torch.device | str = "auto") -> torch.device:
    """"auto" -> cuda if available, else mps if available, else cpu; any other name is used as given."""
    if str(name) != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
