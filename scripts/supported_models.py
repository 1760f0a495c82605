"""Write the architecture matrix's expectations and the support table from one run of it.

    python scripts/supported_models.py            # every architecture key, both dtypes (~5 min)
    python scripts/supported_models.py KEY ...    # re-measure some keys, keep the others

Runs `tests/architectures.py`'s `expected_entry` (what `tests/test_architectures.py` asserts) on
every key of TransformerLens' adapter factory in float32 and float64, writes the outcomes to
`tests/data/architectures.json` and renders `docs/SUPPORTED_MODELS.md` from them. The test fails
when a key's outcome or the table drifts from this file: rerun this script and review the diff.
"""

import json
import signal
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import architectures  # noqa: E402 - after the path set-up above

TIMEOUT_S = 120  # a key that builds longer than this is recorded as such


def _timeout(signum: int, frame: object) -> None:
    raise architectures.NotBuildable(f"took over {TIMEOUT_S} s to build and run here")


def main(argv: list[str]) -> int:
    """Measure the keys named (default: all), merge into the expectations, render the table."""
    warnings.simplefilter("ignore")
    path = architectures.EXPECTED_FILE
    table = json.loads(path.read_text()) if path.exists() else {}
    keys = argv or architectures.all_keys()
    signal.signal(signal.SIGALRM, _timeout)
    for key in keys:
        table[key] = {}
        for name, dtype in architectures.DTYPES.items():
            signal.alarm(TIMEOUT_S)
            try:
                table[key][name] = architectures.expected_entry(key, dtype)
            except Exception as e:  # the test fails on it: record it here, to be fixed
                table[key][name] = {"status": "CRASH", "note": f"{type(e).__name__}: {e}"[:300]}
            finally:
                signal.alarm(0)
            cell = table[key][name]
            print(f"{key:48s} {name}: {cell['status']} flow {cell.get('flow')}", flush=True)
    ordered = {k: table[k] for k in architectures.all_keys() if k in table}
    path.write_text(json.dumps(ordered, indent=1, ensure_ascii=False) + "\n")
    (ROOT / "docs" / "SUPPORTED_MODELS.md").write_text(architectures.render_table(ordered))
    print(f"wrote {path.relative_to(ROOT)} and docs/SUPPORTED_MODELS.md ({len(ordered)} keys)")
    crashed = [
        k for k, cells in ordered.items() if any(c["status"] == "CRASH" for c in cells.values())
    ]
    if crashed:
        print(f"CRASH (an exception other than alti_lens's escaped): {crashed}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
