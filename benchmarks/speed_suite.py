"""The speed benchmarks in one command, one after another on a quiet machine (about 1 h on 2 CPU
cores, most of it the imitation comparison; a stopped suite resumes that part from its runs):

- `throughput.py`: updates/s of the Lightning loop against a bare PyTorch loop for the soft-Q and
  SAC modules and each fast path, env steps/s of collection and of the whole loop (sync, async);
- `ddp_scaling.py`: updates/s and env steps/s with 1 and 2 DDP processes on the CPU;
- `imitation_comparison.py`: wall-clock and env steps to the scripted expert's success on
  LunarLander against the `imitation` package's SQIL (installed into its own venv).

With ``--write`` each appends its section (date, machine, versions, command) to docs/results.md.

    python benchmarks/speed_suite.py --write
    python benchmarks/speed_suite.py --only throughput ddp_scaling
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Each benchmark with the settings of the figures in docs/results.md.
BENCHMARKS = {
    "throughput": ["--repeats", "5"],
    "ddp_scaling": ["--steps", "4000"],
    "imitation_comparison": ["--seeds", "0", "1", "2", "--every", "5000", "--peer-steps", "80000"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS), help="run only these")
    parser.add_argument("--write", action="store_true", help="each benchmark appends its figures to docs/results.md")
    args = parser.parse_args()
    for name in args.only:
        command = [sys.executable, str(HERE / f"{name}.py"), *BENCHMARKS[name], *(["--write"] if args.write else [])]
        print(f"== {' '.join(command[1:])}", flush=True)
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
