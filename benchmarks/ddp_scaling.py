"""Steps/s and samples/s of each experiment with 1 process and under ``torchrun`` with N processes.

    python benchmarks/ddp_scaling.py                 # 1 and 2 processes, this machine's cores shared out
    python benchmarks/ddp_scaling.py --procs 1 2 4 --device cuda   # on a GPU node: one GPU per process

The global batch is the same for every world size (``--batch-size`` keeps its meaning), so a
speed-up is the same training done faster. On the CPU the cores are shared out: a single process
gets all of them as torch threads, each of N processes gets cores/N. Rates are measured between the
first and the last log line (start-up, data set-up and the final evaluation excluded). Figures are
printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def experiments(tmp: Path, device: str, steps: int) -> dict:
    """name -> (clica arguments, run folder where metrics.jsonl lands, samples per step)."""
    cuda = [] if device == "cuda" else ["--no-cuda"]
    kitti = tmp / "kitti"
    if not (kitti / "kitti_peds_v2.pickle").exists():
        subprocess.run([sys.executable, "-m", "clica", "data", "kitti-masks", "--output",
                        str(kitti / "kitti_peds_v2.pickle"), "--seed", "0"], check=True, capture_output=True)
    td = tmp / "3di"
    if not (td / "stats.json").exists():
        subprocess.run([sys.executable, "-m", "clica", "render", "dataset", "--output-folder", str(td),
                        "--n-points", "2000", "--non-periodic-rotation-and-color", "--image-size", "64",
                        "--workers", "1", "--seed", "0"], check=True, capture_output=True)
    log = max(1, steps // 4)
    return {
        "mlp (headline recipe, batch 1024)": (
            ["mlp", "--preset", "headline", "--n-steps", str(steps), "--n-log-steps", str(log), "--seed", "0",
             "--device", device, "--save-dir", "{run}"], "{run}", 2 * 1024),
        "kitti (batch 64 images)": (
            ["kitti", "--data-dir", str(kitti), "--box-norm", "1", "--lr", "1e-3", "--max-iter", str(steps),
             "--log-step", str(log), "--seed", "0", "--num-workers", "0", "--output-dir", "{run}/out",
             "--ckpt-dir", "{run}/ckpt", "--n-eval-samples", "1000"] + (["--cuda"] if device == "cuda" else []),
            "{run}/out/kittimasks_1/1_1/0", 64),
        "3dident (ResNet-18, 64 px, batch 64 pairs)": (
            ["3dident", "--offline-dataset", str(td), "--non-periodic-rotation-and-color", "--mode", "unsupervised",
             "--batch-size", "64", "--iterations", str(steps), "--n-log-steps", str(log), "--n-eval-samples", "256",
             "--image-cache", "build", "--seed", "0", "--run-dir", "{run}", *cuda], "{run}", 2 * 64),
    }


def measure(argv: list, folder: str, nproc: int, cores: int, device: str) -> float:
    """Steps per second between the first and last log line."""
    with tempfile.TemporaryDirectory() as run:
        args = [a.replace("{run}", run) for a in argv]
        threads = max(1, cores // nproc) if device == "cpu" else 1
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        if nproc == 1:
            cmd = [sys.executable, "-m", "clica", *args]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   "-m", "clica", *args]
        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        records = [json.loads(line) for line in (Path(folder.replace("{run}", run)) / "metrics.jsonl")
                   .read_text().splitlines()]
        first, last = records[0], records[-1]
        return (last["step"] - first["step"]) / (last["time_s"] - first["time_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=200, help="training steps per measurement")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--data", default=None, help="folder for the generated datasets (default: a temporary one)")
    parser.add_argument("--only", nargs="+", choices=("mlp", "kitti", "3dident"), default=None,
                        help="measure only these experiments")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(opts.data or tmp)
        print("| experiment | processes | steps/s | samples/s | speed-up |\n|---|---|---|---|---|")
        for name, (argv, folder, per_step) in experiments(data, opts.device, opts.steps).items():
            if opts.only and argv[0] not in opts.only:
                continue
            base = None
            for nproc in opts.procs:
                rate = measure(argv, folder, nproc, opts.cores, opts.device)
                base = base or rate
                print(f"| {name} | {nproc} | {rate:.2f} | {rate * per_step:.0f} | {rate / base:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
