"""Convert checkpoints written before two renames: the U-Net's "prediction" and the autoencoder's "beta".

1. Older model checkpoints stored what the network predicts twice: in the U-Net's config ("model": {"prediction":
   ...}) and in the diffusion settings ("diffusion": {"prediction": ...}). Now it is a diffusion setting alone
   (minidiff.diffusion.config.DiffusionConfig). This script removes the copy from the U-Net's config, after checking
   that both agree.
2. Older autoencoder checkpoints called the KL weight "beta" ("config": {"beta": ...}), the letter of the noise
   schedule. Now it is AutoencoderConfig.kl_weight (kappa in docs/notation.md). This script renames the field, in
   its place, keeping its value.

Only the JSON changes: the weights file, and the sha256 of it that the JSON records, stay as they are.

    python scripts/convert_checkpoints.py data/checkpoints/*.json      # the shipped ones were converted this way

Run folders are not converted: the training state (train_state.json) of a run folder written before these renames
stores the old configs and can no longer be resumed; start the run again. Only checkpoints are converted.
"""

import argparse
import json
from pathlib import Path

from minidiff.files.atomic import atomic_write_bytes
from minidiff.files.checkpoint import read_tensors_and_json


def convert_model(meta: dict, json_path: Path) -> bool:
    """Drop the U-Net config's copy of "prediction" (after checking it agrees); True if it was there."""
    if "prediction" not in meta["model"]:
        return False
    prediction = meta["model"].pop("prediction")
    if prediction != meta["diffusion"]["prediction"]:
        raise ValueError(f"{json_path}: the U-Net says {prediction!r} but the diffusion settings say "
                         f"{meta['diffusion']['prediction']!r}; fix it by hand")
    return True


def convert_autoencoder(meta: dict) -> bool:
    """Rename the autoencoder config's "beta" to "kl_weight", in the same place; True if it was there."""
    if "beta" not in meta["config"]:
        return False
    meta["config"] = {("kl_weight" if name == "beta" else name): value for name, value in meta["config"].items()}
    return True


def convert(json_path: Path) -> bool:
    """Convert one checkpoint's JSON in place; True if it changed. The pair is checked (sha256) before writing."""
    kind = json.loads(json_path.read_text()).get("kind")
    if kind not in ("model", "autoencoder"):
        return False  # a training state or the digit classifier: no config to convert
    _, meta = read_tensors_and_json(json_path.with_suffix(""))
    changed = convert_model(meta, json_path) if kind == "model" else convert_autoencoder(meta)
    if changed:
        atomic_write_bytes(json_path, (json.dumps(meta, indent=2) + "\n").encode())
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="STEM.json files of checkpoints")
    for path in parser.parse_args().paths:
        changed = convert(path)
        sha256 = json.loads(path.read_text()).get("tensors_sha256", "not recorded")
        print(f"{path}: {'converted' if changed else 'nothing to do'} (weights sha256 {sha256})")


if __name__ == "__main__":
    main()
