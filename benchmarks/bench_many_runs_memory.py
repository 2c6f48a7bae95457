"""Peak memory `%%repro --runs N` adds over a cell that reads a model, for N = 2 to 5 (issue 23).

    python benchmarks/bench_many_runs_memory.py [--params 100e6] [--runs 2,3,4,5]

Each case runs in a fresh process (so the peak is the cell's): a model of about `--params` float32
parameters in the namespace, the cell `total = sum(float(p.sum()) for p in model.parameters())` run
once plainly (its own peak is the baseline), then under `%%repro --runs N`. Reported: the peak RSS
added, as a multiple of the model's bytes.                          Target: <= 1.1x for every N
(the snapshot and at most one copy of the results at a time, whatever the number of runs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

MEMORY_PROBE = """
import json, os, sys, tempfile
os.environ.setdefault("IPYTHONDIR", tempfile.mkdtemp())
import torch
from IPython.testing.globalipapp import start_ipython
shell = start_ipython()
shell.run_line_magic("load_ext", "ipyrepro")
width = 2048
layers = max(1, round({params} / (width * width + width)))
with torch.no_grad():
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)])
shell.user_ns["model"] = model
model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
cell = "total = sum(float(p.sum()) for p in model.parameters())"
shell.run_cell(cell)  # the cell itself, once, so its own peak is in the baseline
def peak():  # VmHWM: this process's own peak (ru_maxrss can carry the parent's from before exec)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
before = peak()
{subject}
after = peak()
print("RESULT" + json.dumps({{"model_bytes": model_bytes, "extra": after - before}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=float, default=100e6, help="model size (float32 parameters)")
    parser.add_argument("--runs", default="2,3,4,5", help="comma-separated run counts")
    args = parser.parse_args()
    subjects = {"plain cell (baseline)": "shell.run_cell(cell)"}
    for runs in args.runs.split(","):
        subjects[f"%%repro --runs {runs}"] = f"assert shell.run_cell_magic('repro', '--runs {runs}', cell).ok"
    print(f"peak RSS added by the cell, model of about {args.params / 1e6:.0f} M float32 parameters")
    for name, subject in subjects.items():
        code = textwrap.dedent(MEMORY_PROBE).format(params=args.params, subject=subject)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
        result = json.loads(line.removeprefix("RESULT"))
        ratio = result["extra"] / result["model_bytes"]
        mark = "" if "baseline" in name else f"   target <= 1.1x: {'met' if ratio <= 1.1 else 'MISSED'}"
        print(f"  {name:<48} {result['extra'] / 2**20:9.0f} MiB  {ratio:5.2f}x the model{mark}")


if __name__ == "__main__":
    main()
