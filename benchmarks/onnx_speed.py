"""ONNX (float32 and int8) against tk's own default scoring path, through tk export's own check.

    TK_DATA_DIR=../shared/data python benchmarks/onnx_speed.py RUN [--check-data FILE]

tk export scores the same rows with the run's model (tk predict's path) and with ONNX Runtime, in one
process, one after the other, tokenizing included, and prints agreement, the largest probability difference,
accuracy with intervals, McNemar p and texts/s of both. This script runs it for float32 and for int8 into a
temporary folder and prints one table. The issue's target: a run of imdb-minilm whose test rows are 2,000
IMDB test reviews at 128 tokens (tk run imdb-minilm --set eval_size=2000).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--check-data", help="check on every row of this file instead of the run's test rows")
    args = parser.parse_args()
    tk = Path(sys.executable).with_name("tk")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for quantize in (None, "int8"):
            command = [str(tk), "export", str(args.run), "--output", f"{folder}/{quantize or 'fp32'}",
                       "--min-agreement", "0", "--json"]
            command += ["--quantize", quantize] if quantize else []
            command += ["--check-data", args.check_data] if args.check_data else []
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                sys.exit(done.stderr)
            check = json.loads(done.stdout)["check"]
            rows.append((quantize or "float32", check))
    print(f"{rows[0][1]['rows']:,} rows ({rows[0][1]['split']}, {rows[0][1]['data_source']})")
    print(f"{'export':<8} {'agreement':>9} {'max |dp|':>9} {'acc run':>8} {'acc export [95% CI]':>24} "
          f"{'McNemar p':>9} {'run t/s':>8} {'onnx t/s':>9} {'ratio':>6}")
    for name, check in rows:
        ours, theirs = check["metrics"]["run"], check["metrics"]["export"]
        speed = check["texts_per_second"]
        interval = theirs.get("accuracy_ci") or [float("nan")] * 2
        print(f"{name:<8} {check['agreement']:>9.2%} {check['max_probability_difference']:>9.4f} "
              f"{ours['accuracy']:>8.4f} {theirs['accuracy']:>8.4f} [{interval[0]:.4f}, {interval[1]:.4f}] "
              f"{check['mcnemar_p']:>9.3g} {speed['run']:>8.1f} {speed['export']:>9.1f} "
              f"{speed['export'] / speed['run']:>5.2f}x")


if __name__ == "__main__":
    main()
