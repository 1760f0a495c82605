"""`alti-lens corpus`: ALTI over a corpus file into a Parquet dataset (`alti_lens.corpus.run`).

Paths are checked before anything heavy is imported; the input's records are validated (with
their line numbers) before any model work. Public API only, like the other commands.
"""

import argparse
import sys
from pathlib import Path

from alti_lens.errors import InputError

from .output import Status, check_path


def corpus(args: argparse.Namespace, status: Status) -> int:
    """`alti-lens corpus`: one Parquet row per input record, a manifest, resumable."""
    if not Path(args.input).exists():
        raise InputError(
            f"--input {args.input} does not exist; expected a JSONL, CSV or Parquet file or a "
            "`datasets` dataset saved to disk. Fix: check the path."
        )
    check_path("--output", args.output, folder=True)
    from alti_lens.corpus import run

    manifest = run(
        args.model, args.input, args.output, method=args.method, engine=args.engine,
        workers=args.workers, batch_size=args.batch_size, text_field=args.text_field,
        source_field=args.source_field, target_field=args.target_field, id_field=args.id_field,
        save=args.save, skip_bad=args.skip_bad, measure=args.measure, threshold=args.threshold,
        shard_size=args.shard_size, quiet=args.quiet, device=args.device, dtype=args.dtype,
        ray_address=args.ray_address, num_gpus=args.num_gpus,
    )  # fmt: skip
    sys.stdout.write(summary(manifest, args.output) + "\n")
    return 0


def summary(manifest: dict, output: Path) -> str:
    """One paragraph: what was written where, how fast, and what was left out."""
    counts, timings = manifest["counts"], manifest.get("timings", {})
    rate = timings.get("examples_per_s")
    lines = [
        f"{counts['done']} rows in {output} ({counts['computed']} computed now, "
        f"{counts['skipped']} already there, {counts['rejected']} rejected)",
        f"method {manifest['options']['method']} · model {manifest['model']}"
        + (f" · {rate:.2f} examples/s" if rate else "")
        + f" · padding waste {manifest.get('padding_waste', 0.0):.1%}",
        f"manifest: {Path(output) / 'manifest.json'}",
    ]
    if counts["rejected"]:
        lines.append(f"rejects (line, reason): {Path(output) / 'rejects.jsonl'}")
    return "\n".join(lines)
