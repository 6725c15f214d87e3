"""Train the digit classifier behind `minidiff.metrics` and ship it to data/checkpoints/.

    python scripts/train_digit_classifier.py

Trains `minidiff.measure.classifier.DigitClassifier` on MNIST-5k minus a held-out set of 50 digits per class, with each
training digit shifted by up to 2 pixels, using Adam and cross-entropy. It runs on the CPU in a few minutes,
seeded, and writes digit_classifier.safetensors (weights) + digit_classifier.json (config, command, seed,
device, minutes, held-out accuracy).
"""

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

from minidiff.data.digits import mnist5k
from minidiff.data.paths import DATA_DIR
from minidiff.data.pixels import to_model
from minidiff.measure.classifier import (
    DigitClassifier,
    DigitClassifierConfig,
    held_out_split,
    random_shift,
    save_classifier,
)

OUT = DATA_DIR / "checkpoints" / "digit_classifier.safetensors"


def accuracy(model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images (N, 1, 28, 28) whose most likely class is their label."""
    model.eval()
    with torch.no_grad():
        predicted = model(images).argmax(dim=1)  # (N, 10) -> (N,)
    return (predicted == labels).float().mean().item()


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)  # the initial weights
    generator = torch.Generator().manual_seed(args.seed)  # batch order and shifts
    digits, labels = mnist5k()
    train_idx, held_out_idx = held_out_split(labels, per_class=args.held_out_per_class, seed=args.seed)
    x_train, y_train = to_model(digits[train_idx]), torch.from_numpy(labels[train_idx])  # (4500, 1, 28, 28)
    x_held, y_held = to_model(digits[held_out_idx]), torch.from_numpy(labels[held_out_idx])  # (500, 1, 28, 28)

    model = DigitClassifier(DigitClassifierConfig())
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = (len(x_train) + args.batch_size - 1) // args.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch)
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total_loss = 0.0
        for batch in order.split(args.batch_size):
            x = random_shift(x_train[batch], args.max_shift, generator)
            loss = nn.functional.cross_entropy(model(x), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(batch)
        held_out_accuracy = accuracy(model, x_held, y_held)
        print(f"epoch {epoch + 1:2d}/{args.epochs}  loss {total_loss / len(x_train):.4f}  "
              f"held-out accuracy {held_out_accuracy:.4f}  ({(time.time() - start) / 60:.1f} min)")
    minutes = (time.time() - start) / 60

    info = {
        "command": "python " + " ".join(sys.argv),
        "seed": args.seed,
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "minutes": round(minutes, 2),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "max_shift": args.max_shift,
        "held_out_per_class": args.held_out_per_class,
        "split_seed": args.seed,
        "held_out_accuracy": round(accuracy(model, x_held, y_held), 4),
        "train_accuracy": round(accuracy(model, x_train, y_train), 4),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    save_classifier(model, args.out, info)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e3:.0f} kB) and its .json: {info}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--max-shift", type=int, default=2, help="training digits move by up to this many pixels")
    parser.add_argument("--held-out-per-class", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    train(parser.parse_args())


if __name__ == "__main__":
    main()
