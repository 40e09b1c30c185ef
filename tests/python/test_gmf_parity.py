#!/usr/bin/env python3
"""GMF trained in PyTorch with fpd.torch.FPDEmbeddingBag tables against the C trainer
(build/sample-train-gmf, fpd_gmf_train) on the same MovieLens-100K leave-one-out split.

Usage: test_gmf_parity.py BUILD_DIR ROOT_DIR DATA_DIR   (run by tests/cli/test-python.sh)
Prints "ok NAME" / "not ok NAME: why" / "skip NAME: why"; exits 1 on a failure.

The two trainers share the model, the initialization law, the sampler's law, the batch,
lazy Adam on the core slices and Adam on the prediction layer, but not their random
streams, so they agree in distribution, not bit for bit. The C trainer runs three seeds;
the PyTorch model one. The check: its HR@10 within 0.05 of the C mean (the binomial sd of
HR@10 over 943 test users is 0.015 at 0.7, and the two differ by two such draws plus the
seed spread), and its final training loss (mean logistic loss of the last epoch) within
0.01 of the C mean (the C seeds spread by ~0.001). A broken gradient or optimizer in the
binding leaves the loss near 0.4-0.69 and HR@10 far lower: both fail.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

BUILD, ROOT, DATA = (os.path.abspath(x) for x in sys.argv[1:4])
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import finish, report, skip  # noqa: E402

RATINGS = os.path.join(DATA, "movielens-100k", "u.data")
MODEL = ["--dim", "32", "--cores", "2", "--rank", "16", "--core-lr", "3e-3", "--epochs", "3"]


def main():
    if not os.path.exists(RATINGS):
        skip("gmf parity (PyTorch vs C trainer)", f"{RATINGS} is absent")
        return
    work = tempfile.mkdtemp(prefix="fpd-gmfparity-")
    prefix = os.path.join(work, "g")
    c = subprocess.run([os.path.join(BUILD, "sample-train-gmf"), RATINGS, "--tables", "fpd", *MODEL,
                        "--seeds", "1,2,3", "-o", prefix, "--write-test", "--json"],
                       capture_output=True, text=True, check=True)
    runs = json.loads(c.stdout)["runs"]
    hr_c = [r["hr10"] for r in runs]
    loss_c = [r["final_loss"] for r in runs]
    t = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "python", "bench", "gmf_torch.py"), RATINGS,
                        prefix, *MODEL, "--seed", "1", "--json"], capture_output=True, text=True, check=True,
                       env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tools", "python")))
    torch_run = json.loads(t.stdout.strip().splitlines()[-1])
    mc, sc = statistics.mean(hr_c), statistics.stdev(hr_c)
    ml = statistics.mean(loss_c)
    line = (f"MovieLens-100K GMF D=32 FPD k=2 r=16 ({torch_run['ratio']:.1f}x), 3 epochs: "
            f"HR@10 PyTorch+FPDEmbeddingBag {torch_run['hr10']:.4f} (seed 1), C trainer {mc:.4f} sd {sc:.4f} "
            f"(seeds 1-3); final loss {torch_run['final_loss']:.4f} vs {ml:.4f}")
    print(line, file=sys.stderr)
    report(f"gmf parity: HR@10 of PyTorch training within 0.05 of the C trainer's mean ({line})",
           abs(torch_run["hr10"] - mc) <= 0.05, line)
    report("gmf parity: final training loss within 0.01 of the C trainer's mean",
           abs(torch_run["final_loss"] - ml) <= 0.01, line)
    report("gmf parity: same parameter count as the C trainer's FPD tables",
           torch_run["params"] == runs[0]["params"], f"{torch_run['params']} vs {runs[0]['params']}")


main()
sys.exit(finish())
