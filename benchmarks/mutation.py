"""Mutation testing: does the unit suite notice a plausible mistake in the maths?

Each mutant below is one small, plausible change to one file of `minidiff/` (the exact old text, the new text): a
sign, an off-by-one, a dropped warm-up, a rate inverted, a generator forgotten. For each, the script copies the
package into a temporary folder, applies the change there (the working tree is never touched), and runs a fast
subset of `make check`'s tests against the copy with `-x`. A mutant is *killed* when a test fails, *survived*
when all pass: a survivor is a mistake the suite would let through, so each one asks for a test. Prints the kill
rate and the survivors, and writes them to --out.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mutation.py                  # every mutant, ~10-15 minutes
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mutation.py --only ema-warm-up-dropped   # one (prints, no file)
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from minidiff.files.atomic import atomic_write_bytes

ROOT = Path(__file__).resolve().parent.parent
UNIT_TESTS = "not chapters and not book and not browser and not install"  # make check's selection
DIFFUSION_TESTS = ("tests/diffusion", "tests/training/test_training_properties.py")
NETS_TESTS = ("tests/nets",)
TRAINING_TESTS = ("tests/training",)


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # inside minidiff/
    old: str  # exact text, found exactly once in the file
    new: str
    tests: tuple[str, ...]  # the tests that should catch it (a fast subset of make check)


MUTANTS = [
    # the five that once survived the whole suite
    Mutant("training-t-misses-the-last-step", "training/loop.py",
           "t = torch.randint(0, schedule.T, (len(x0),)", "t = torch.randint(0, schedule.T - 1, (len(x0),)",
           TRAINING_TESTS),
    Mutant("ema-warm-up-dropped", "training/run.py",
           "return min(config.ema_decay, (1 + step) / (10 + step))", "return config.ema_decay", TRAINING_TESTS),
    Mutant("class-dropout-inverted", "training/loop.py",
           "drop = torch.rand(len(conditions), generator=generator) < config.class_drop_prob",
           "drop = torch.rand(len(conditions), generator=generator) > config.class_drop_prob", TRAINING_TESTS),
    Mutant("sdedit-steps-truncated-by-int", "diffusion/timesteps.py",
           "count = round_half_up(strength * len(timesteps))", "count = int(strength * len(timesteps))",
           DIFFUSION_TESTS),
    Mutant("inpainting-noise-from-the-global-rng", "diffusion/editing.py",
           "(1 - alpha_bar) ** 0.5 * fresh_noise(x_t, edit.generator)",
           "(1 - alpha_bar) ** 0.5 * torch.randn_like(x_t)", DIFFUSION_TESTS),
    # diffusion/
    Mutant("min-snr-zero-snr-weight-dropped", "diffusion/loss.py",
           "torch.where(snr == 0, torch.ones_like(weights), weights)", "weights", DIFFUSION_TESTS),
    Mutant("min-snr-v-weight-divides-by-snr", "diffusion/loss.py",
           "weights = capped / (snr + 1)", "weights = capped / snr.clamp(min=1e-12)", DIFFUSION_TESTS),
    Mutant("q-sample-noise-not-square-rooted", "diffusion/forward.py",
           "expand_like(alpha_bar.sqrt(), x0) * x0 + expand_like((1 - alpha_bar).sqrt(), x0) * eps",
           "expand_like(alpha_bar.sqrt(), x0) * x0 + expand_like(1 - alpha_bar, x0) * eps", DIFFUSION_TESTS),
    Mutant("posterior-x0-coefficient-alpha-bar-not-prev", "diffusion/schedule.py",
           "coef_x0 = alpha_bar_prev.sqrt() * beta / (1.0 - alpha_bar)",
           "coef_x0 = alpha_bar.sqrt() * beta / (1.0 - alpha_bar)", DIFFUSION_TESTS),
    Mutant("ddim-noise-variance-left-in-eps", "diffusion/steps.py",
           "math.sqrt(1.0 - alpha_bar_prev - step_variance) * eps", "math.sqrt(1.0 - alpha_bar_prev) * eps",
           DIFFUSION_TESTS),
    Mutant("guidance-scale-plus-one", "diffusion/guidance.py",
           "guided = output_uncond + guidance * (output_cond - output_uncond)",
           "guided = output_uncond + (1 + guidance) * (output_cond - output_uncond)", DIFFUSION_TESTS),
    Mutant("dpm-solver-2m-extrapolation-halved-wrong", "diffusion/dpm_solver.py",
           "return (1.0 + 1.0 / (2.0 * r)) * x0 - 1.0 / (2.0 * r) * x0_earlier",
           "return (1.0 + 1.0 / r) * x0 - 1.0 / r * x0_earlier", DIFFUSION_TESTS),
    Mutant("dpm-solver-keeps-a-stale-prediction-after-a-jump", "diffusion/dpm_solver.py",
           "if alpha_bar_earlier is not None and alpha_bar_earlier >= alpha_bar:",
           "if False:", DIFFUSION_TESTS),
    Mutant("karras-sigmas-divide-by-steps", "diffusion/timesteps.py",
           "i / (steps - 1) * (sigma_min", "i / steps * (sigma_min", DIFFUSION_TESTS),
    Mutant("latent-mask-averages", "diffusion/editing.py",
           "return F.max_pool2d(mask, kernel_size=factor)", "return F.avg_pool2d(mask, kernel_size=factor)",
           DIFFUSION_TESTS),
    Mutant("repaint-one-walk-too-few", "diffusion/editing.py",
           "for _ in range(edit.resamplings):", "for _ in range(edit.resamplings - 1):", DIFFUSION_TESTS),
    Mutant("repaint-jump-noise-not-square-rooted", "diffusion/editing.py",
           "(1 - ratio) ** 0.5 * fresh_noise(x_s, generator)", "(1 - ratio) * fresh_noise(x_s, generator)",
           DIFFUSION_TESTS),
    Mutant("zero-terminal-snr-keeps-the-last-sqrt-alpha-bar", "diffusion/schedule.py",
           "sqrt_alpha_bar = (sqrt_alpha_bar - last) * first / (first - last)",
           "sqrt_alpha_bar = sqrt_alpha_bar * first / (first - last)", DIFFUSION_TESTS),
    # nets/
    Mutant("timestep-embedding-sin-cos-swapped", "nets/layers.py",
           "torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)",
           "torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)", NETS_TESTS),
    Mutant("adagn-scale-without-one", "nets/layers.py", "gain = norm.weight * (1 + scale)", "gain = norm.weight * scale",
           NETS_TESTS),
    Mutant("self-attention-unscaled", "nets/layers.py",
           "out = F.scaled_dot_product_attention(q, k, v)  #",
           "out = F.scaled_dot_product_attention(q, k, v, scale=1.0)  #", NETS_TESTS),
    Mutant("attention-unscaled", "nets/layers.py",
           "scores_t = k @ (q / math.sqrt(d)).transpose(-1, -2)", "scores_t = k @ q.transpose(-1, -2)", NETS_TESTS),
    Mutant("attention-ignores-padding", "nets/layers.py",
           "out = attention(q, k, v, context_mask)", "out = attention(q, k, v, None)", NETS_TESTS),
    Mutant("attention-softmax-over-queries", "nets/layers.py",
           "weights_t = scores_t.softmax(dim=-2)", "weights_t = scores_t.softmax(dim=-1)", NETS_TESTS),
    Mutant("token-dropout-drops-the-start-token", "nets/conditioning.py",
           "drop = (drop_all[:, None] | drop_each) & (tokens != START)", "drop = drop_all[:, None] | drop_each",
           NETS_TESTS),
    Mutant("vae-sample-uses-the-variance-as-std", "nets/autoencoder.py",
           "return mean + torch.exp(0.5 * logvar) * eps", "return mean + torch.exp(logvar) * eps", NETS_TESTS),
    # training/
    Mutant("learning-rate-warm-up-starts-at-zero", "training/run.py",
           "rate = config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))",
           "rate = config.lr * min(1.0, step / max(1, config.warmup_steps))", TRAINING_TESTS),
    Mutant("ema-moves-by-decay-not-one-minus-decay", "training/run.py",
           "ema_weight.lerp_(weight, 1.0 - decay)", "ema_weight.lerp_(weight, decay)", TRAINING_TESTS),
    Mutant("min-snr-weights-never-applied", "training/loop.py",
           "return (weights * per_image).mean()", "return per_image.mean()", TRAINING_TESTS),
]


def mutated_copy(mutant: Mutant | None, into: Path) -> Path:
    """A copy of minidiff/ under `into`, with the mutant applied (None: unchanged). Returns the copy's parent."""
    package = into / "minidiff"
    shutil.copytree(ROOT / "minidiff", package, ignore=shutil.ignore_patterns("__pycache__"))
    if mutant is not None:
        path = package / mutant.path
        text = path.read_text()
        if text.count(mutant.old) != 1:
            raise ValueError(f"{mutant.name}: the old text occurs {text.count(mutant.old)} times in {mutant.path}, "
                             "not once; update the mutant to the current source")
        path.write_text(text.replace(mutant.old, mutant.new))
    return into


def run_tests(package_parent: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float]:
    """Run `tests` against the package under package_parent: ("passed" | "failed" | "timeout", seconds)."""
    env = {**os.environ, "PYTHONPATH": str(package_parent), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "MINIDIFF_DATA": os.environ.get("MINIDIFF_DATA", str(ROOT / "data"))}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", UNIT_TESTS,
               "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), *(str(ROOT / test) for test in tests)]
    start = time.monotonic()
    try:  # run from the copy's folder: `python -m` puts the working directory first on sys.path
        result = subprocess.run(command, cwd=package_parent, env=env, capture_output=True, timeout=timeout,
                                check=False)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - start
    return ("passed" if result.returncode == 0 else "failed"), time.monotonic() - start


def imported_from(package_parent: Path) -> Path:
    """Where `import minidiff` finds the package with package_parent on PYTHONPATH (must be the copy)."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    out = subprocess.run([sys.executable, "-c", "import minidiff; print(minidiff.__file__)"], cwd=package_parent, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    return Path(out).resolve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", default=None, help="names of the mutants to run (default: all)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant's tests (a timeout kills it)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mutation.txt")
    args = parser.parse_args()
    mutants = [m for m in MUTANTS if args.only is None or m.name in args.only]
    lines = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    with tempfile.TemporaryDirectory(prefix="minidiff-mutants-") as scratch:
        baseline = mutated_copy(None, Path(scratch) / "baseline")
        if Path(scratch) not in imported_from(baseline).parents:
            sys.exit(f"import minidiff does not find the copy under {scratch}: is the package installed non-editably?")
        for tests in sorted({m.tests for m in mutants}):
            outcome, seconds = run_tests(baseline, tests, args.timeout)
            if outcome != "passed":
                sys.exit(f"the unmutated package does not pass {' '.join(tests)} ({outcome}): fix that first")
            say(f"baseline passes {' '.join(tests)} ({seconds:.0f} s)")
        survivors = []
        for index, mutant in enumerate(mutants):
            outcome, seconds = run_tests(mutated_copy(mutant, Path(scratch) / f"m{index}"), mutant.tests, args.timeout)
            verdict = "survived" if outcome == "passed" else f"killed ({outcome})"
            say(f"{mutant.name:52s} {mutant.path:24s} {verdict:18s} {seconds:5.0f} s")
            if outcome == "passed":
                survivors.append(mutant)
    killed = len(mutants) - len(survivors)
    say(f"kill rate: {killed} of {len(mutants)} mutants ({killed / len(mutants):.0%})")
    say("survivors: " + (", ".join(m.name for m in survivors) if survivors else "none"))
    if args.only is None:
        header = [(f"# {time.strftime('%Y-%m-%d')}: OMP_NUM_THREADS=1 python benchmarks/mutation.py "
                   f"(tests run with -x -m \"{UNIT_TESTS}\")")]
        atomic_write_bytes(args.out, ("\n".join(header + lines) + "\n").encode())
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
