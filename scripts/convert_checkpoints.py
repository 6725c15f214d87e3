"""Convert model checkpoints written before the network and the diffusion settings were separated.

Older model checkpoints stored what the network predicts twice: in the U-Net's config ("model": {"prediction": ...})
and in the diffusion settings ("diffusion": {"prediction": ...}). Now it is a diffusion setting alone
(minidiff.diffusion.config.DiffusionConfig). This script removes the copy from the U-Net's config, after checking that
both agree. Only the JSON changes: the weights file, and the sha256 of it that the JSON records, stay as they are.

    python scripts/convert_checkpoints.py data/checkpoints/*.json      # the shipped ones were converted this way
"""

import argparse
import json
from pathlib import Path

from minidiff.files.atomic import atomic_write_bytes
from minidiff.files.checkpoint import read_tensors_and_json


def convert(json_path: Path) -> bool:
    """Convert one checkpoint's JSON in place; True if it changed. The pair is checked (sha256) before writing."""
    if json.loads(json_path.read_text()).get("kind") != "model":
        return False  # an autoencoder, a training state or the digit classifier: no U-Net config inside
    _, meta = read_tensors_and_json(json_path.with_suffix(""))
    if "prediction" not in meta["model"]:
        return False
    prediction = meta["model"].pop("prediction")
    if prediction != meta["diffusion"]["prediction"]:
        raise ValueError(f"{json_path}: the U-Net says {prediction!r} but the diffusion settings say "
                         f"{meta['diffusion']['prediction']!r}; fix it by hand")
    atomic_write_bytes(json_path, (json.dumps(meta, indent=2) + "\n").encode())
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="STEM.json files of model checkpoints")
    for path in parser.parse_args().paths:
        changed = convert(path)
        sha256 = json.loads(path.read_text()).get("tensors_sha256", "not recorded")
        print(f"{path}: {'converted' if changed else 'nothing to do'} (weights sha256 {sha256})")


if __name__ == "__main__":
    main()
