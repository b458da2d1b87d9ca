"""Time per step and peak memory of every gradient aggregation method, per engine path.

For K tasks on a shared MLP (64→256→256, batch 128) and on a small CNN (two conv
layers and a 128-unit layer on 3×32×32 inputs, batch 128), each with K linear
regression heads, this measures one full training step (zero_grad, forward, balancer
backward, Adam step) of every method on every engine path it supports, and reports
it relative to equal weighting (``ew``):

- time: best (minimum) wall time of ``--steps`` steps after ``--warmup`` steps (the
  minimum is the most robust statistic on a shared machine); equal weighting is
  re-measured before every configuration and its best time is the reference;
- peak memory: bytes of the tensors alive before the step (parameters, Adam state,
  batch) plus the high-water mark of the tensors allocated during the step, from
  the PyTorch profiler's allocation events (CPU) or ``max_memory_allocated`` (CUDA).

Paths: ``jac-loop`` / ``jac-batched`` (the K×P Jacobian by a loop of autograd calls /
one vmapped call), ``gramian`` (only the K×K Gramian, by Jacobian-vector products with
one task gradient held at a time, then one weighted backward), ``gramian-blocks`` (the
Gramian one parameter tensor at a time), ``rep`` (gradients of the shared
representation).

Writes a Markdown table to ``docs/benchmarks/aggregators.md`` and the raw rows to
``docs/benchmarks/aggregators.csv``::

    python scripts/bench_aggregators.py                      # everything, 1 thread
    python scripts/bench_aggregators.py --threads 2 --tasks 10 --models mlp

``--versus-peers`` instead times each combination rule alone, ``aggregate(J)`` on a
K×P float32 Jacobian (default 10 × 100,000, one thread), against the same rule in
the peer libraries that are installed (torchjd; optional, never required), as the
ratio polytask / fastest peer within one run, and writes
``docs/benchmarks/aggregator_rules.md``. Polytask, the peers and optionally an earlier
polytask tree (``--baseline-src``, timed in a child process) are timed in interleaved
rounds (``--rounds``), and each ratio is the median of the ratios within a round, which
a shared, noisy machine does not skew::

    python scripts/bench_aggregators.py --versus-peers --tasks 10 --params 100000
    git archive main src | tar -x -C /tmp/prev   # then, against main as well:
    python scripts/bench_aggregators.py --versus-peers --baseline-src /tmp/prev/src
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

import polytask.balancing as B

GRAMIAN_METHODS = [
    "mgda",
    "pcgrad",
    "gradvac",
    "cagrad",
    "imtl-g",
    "nash-mtl",
    "aligned-mtl",
    "upgrad",
    "dualproj",
    "config",
    "fairgrad",
]
JACOBIAN_METHODS = ["graddrop", "moco"]
PATHS = {
    "jac-loop": {"path": "jacobian", "strategy": "loop"},
    "jac-batched": {"path": "jacobian", "strategy": "batched"},
    # jacobian_memory_limit=0: hold one task gradient at a time (Jacobian-vector products)
    "gramian": {"path": "gramian", "strategy": "loop", "jacobian_memory_limit": 0},
    "gramian-blocks": {"path": "gramian", "strategy": "loop", "max_block_numel": 1},
    "rep": {"path": "representation", "strategy": "loop"},
}


class JacobianSum(B.GradientAggregator):
    """The sum of the Jacobian's rows: equal weighting computed through the Jacobian
    path, i.e. the cost of the per-task gradients alone, with a free rule."""

    def aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.sum(0)


def make_balancer(method: str, options: dict):
    if method == "jacobian-only":
        return JacobianSum(**options)
    return B.get(method, **options)


class Net(nn.Module):
    """A shared trunk and K linear regression heads; exposes the representation."""

    def __init__(self, trunk: nn.Module, width: int, k: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.heads = nn.ModuleList(nn.Linear(width, 1) for _ in range(k))
        self.rep: torch.Tensor | None = None

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        self.rep = self.trunk(x)
        return {
            f"t{i}": nn.functional.mse_loss(h(self.rep).squeeze(-1), y[:, i])
            for i, h in enumerate(self.heads)
        }


def build(model: str, k: int, device: torch.device):
    """(network, inputs, targets) for ``model`` in {"mlp", "cnn"} with ``k`` tasks."""
    torch.manual_seed(0)
    if model == "mlp":
        trunk = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        x = torch.randn(128, 64)
        width = 256
    else:
        trunk = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 8 * 8, 128),
            nn.ReLU(),
        )
        x = torch.randn(128, 3, 32, 32)
        width = 128
    y = torch.randn(128, k)
    return Net(trunk, width, k).to(device), x.to(device), y.to(device)


def configurations(only: list[str] | None):
    """(method, path label, options) for every method and engine path it supports."""
    yield "ew", "-", {}
    yield "rgw", "-", {}
    for label in ("jac-loop", "jac-batched"):  # the per-task gradients alone, free rule
        yield "jacobian-only", label, PATHS[label]
    for name in GRAMIAN_METHODS:
        for label, options in PATHS.items():
            yield name, label, options
    for name in JACOBIAN_METHODS:
        for label in ("jac-loop", "jac-batched", "rep"):
            yield name, label, PATHS[label]
    if only:
        return


def tensor_bytes(*groups) -> int:
    total = 0
    for group in groups:
        for t in group:
            total += t.numel() * t.element_size()
    return total


def run_config(model_name, k, method, options, args, device):
    """(median seconds per step, peak bytes) of one configuration."""
    net, x, y = build(model_name, k, device)
    balancer = make_balancer(method, options)
    opt = torch.optim.Adam(list(net.parameters()), lr=1e-4)
    shared = list(net.trunk.parameters())

    def step():
        opt.zero_grad(set_to_none=True)
        losses = net.losses(x, y)
        balancer.backward(losses, shared_params=shared, representation=net.rep)
        opt.step()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(args.warmup):
            step()
        times = []
        for _ in range(args.steps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        state = [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
        persistent = tensor_bytes(net.parameters(), state, [x, y])
        if device.type == "cuda":
            opt.zero_grad(set_to_none=True)
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step()
            peak = persistent + torch.cuda.max_memory_allocated() - base
        else:
            opt.zero_grad(set_to_none=True)
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                step()
            events = sorted(prof.events(), key=lambda e: e.time_range.start)
            current = high = 0
            for e in events:
                current += e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
                high = max(high, current)
            peak = persistent + high
    return min(times), peak


def rule_times(ks, repeats: int = 30) -> dict[tuple[str, int], float]:
    """Microseconds per call of each combination rule alone, on a K×K Gramian."""
    out = {}
    for k in ks:
        gen = torch.Generator().manual_seed(k)
        j = torch.randn(k, 2000, generator=gen)
        j[1] = -0.8 * j[0] + 0.3 * j[1]
        for name in GRAMIAN_METHODS + ["graddrop", "moco"]:
            m = B.get(name, path="jacobian")
            gram = (j @ j.T).double()
            call = (
                (lambda m=m, j=j: m.aggregate(j))
                if name in JACOBIAN_METHODS
                else (lambda m=m, gram=gram: m.weights_from_gramian(gram))
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                call()
                best = float("inf")
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    call()
                    best = min(best, time.perf_counter() - t0)
            out[(name, k)] = best * 1e6
    return out


# polytask method -> torchjd aggregator factory (the same rule, default settings)
TORCHJD = {
    "mgda": "MGDA()",
    "upgrad": "UPGrad()",
    "dualproj": "DualProj()",
    "pcgrad": "PCGrad()",
    "imtl-g": "IMTLG()",
    "graddrop": "GradDrop()",
    "aligned-mtl": "AlignedMTL()",
    "config": "ConFIG()",
    "rgw": "Random()",
    "gradvac": "GradVac()",
    "cagrad": "CAGrad(c=0.4)",
    "nash-mtl": "NashMTL(n_tasks={k})",
    "fairgrad": "FairGrad()",
}


def _best_time(call, repeats: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            best = min(best, time.perf_counter() - t0)
    return best


def rule_methods() -> list[str]:
    """The registered Jacobian rules that run on a bare Jacobian with default settings."""
    return sorted(
        n
        for n in B.available()
        if isinstance(B.method_class(n), type)
        and issubclass(B.method_class(n), B.GradientAggregator)
        and not B.method_class(n).requires
    )  # pmtl, epo need losses


def peer_jacobian(k: int, p: int) -> torch.Tensor:
    """The K×P float32 Jacobian every rule is timed on (rows 0 and 1 conflict)."""
    gen = torch.Generator().manual_seed(k)
    j = torch.randn(k, p, generator=gen)
    j[1] = -0.8 * j[0] + 0.3 * j[1]
    return j


def polytask_round(ks, p: int, repeats: int) -> dict[str, float]:
    """One round of polytask's rules: ``{"method K": best ms of repeats}``."""
    out = {}
    for k in ks:
        j = peer_jacobian(k, p)
        for name in rule_methods():
            options = {"path": "jacobian"}
            if B.method_class(name).random:
                options["seed"] = 0
            m = B.get(name, **options)
            if m.path == "representation":
                continue
            out[f"{name} {k}"] = _best_time(lambda m=m, j=j: m.aggregate(j), repeats) * 1e3
    return out


def torchjd_round(ks, p: int, repeats: int) -> dict[str, float]:
    """One round of torchjd's versions of the rules (empty when it is not installed)."""
    try:
        import torchjd.aggregation as tjd  # noqa: F401 - used by eval below
    except ImportError:
        return {}
    out = {}
    for k in ks:
        j = peer_jacobian(k, p)
        for name, factory in TORCHJD.items():
            try:
                agg = eval("tjd." + factory.format(k=k))  # noqa: S307 - fixed table
                out[f"{name} {k}"] = _best_time(lambda agg=agg, j=j: agg(j), repeats) * 1e3
            except Exception as error:  # a peer's optional dependency is missing
                print(f"torchjd {name}: {error}", file=sys.stderr)
    return out


def baseline_round(src: str, ks, p: int, repeats: int) -> dict[str, float]:
    """One round of an earlier polytask (its ``src`` tree), in a child process."""
    env = dict(os.environ, PYTHONPATH=str(Path(src).resolve()))
    cmd = [
        sys.executable,
        __file__,
        "--rule-round-json",
        "--threads",
        "1",
        "--params",
        str(p),
        "--repeats",
        str(repeats),
        "--tasks",
        *map(str, ks),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def recorded_peer(path: str) -> dict[str, tuple[float, float]]:
    """``{"method K": (torchjd ms, ratio)}`` from an earlier rules table with torchjd."""
    out = {}
    for line in Path(path).read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or not cells[1].isdigit():
            continue
        try:
            out[f"{cells[0]} {cells[1]}"] = (float(cells[4]), float(cells[5]))
        except ValueError:
            continue
    return out


def peer_rows(args) -> list[dict]:
    """Interleaved rounds: each round times polytask, the installed peers and the
    baseline tree one after the other, so that they see the same machine load; a
    ratio is the median over rounds of the ratio within each round."""
    names = ("polytask", "torchjd", "previous")
    rounds: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(args.rounds):
        rounds["polytask"].append(polytask_round(args.tasks, args.params, args.repeats))
        rounds["torchjd"].append(torchjd_round(args.tasks, args.params, args.repeats))
        if args.baseline_src:
            rounds["previous"].append(
                baseline_round(args.baseline_src, args.tasks, args.params, args.repeats)
            )
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    recorded = recorded_peer(args.recorded) if args.recorded else {}
    rows = []
    for key in rounds["polytask"][0]:
        name, k = key.rsplit(" ", 1)
        row = {"method": name, "tasks": int(k), "params": args.params}
        for n in names:
            series = [rd[key] for rd in rounds[n] if key in rd]
            if series:
                row[f"{n}_ms"] = min(series)
        for n in ("torchjd", "previous"):
            paired = [
                a[key] / b[key]
                for a, b in zip(rounds["polytask"], rounds[n])
                if key in a and key in b
            ]
            row[f"vs_{n}"] = statistics.median(paired) if paired else float("nan")
        row["ratio"] = row["vs_torchjd"]
        if key in recorded and "previous_ms" in row and row["vs_torchjd"] != row["vs_torchjd"]:
            row["recorded_torchjd_ms"], row["recorded_ratio"] = recorded[key]
            row["projected_ratio"] = row["recorded_ratio"] * row["vs_previous"]
        rows.append(row)
        print(
            f"K={k:>3s} {name:12s} polytask {row['polytask_ms']:8.3f} ms  "
            f"torchjd {row.get('torchjd_ms', float('nan')):8.3f} ms  "
            f"previous {row.get('previous_ms', float('nan')):8.3f} ms  "
            f"ratio {row['ratio']:5.2f}  x previous {row['vs_previous']:5.2f}  "
            f"projected {row.get('projected_ratio', float('nan')):5.2f}",
            flush=True,
        )
    return rows


def peers_markdown(rows, args) -> str:
    peer = any("torchjd_ms" in r for r in rows)
    prev = any("previous_ms" in r for r in rows)
    proj = any("projected_ratio" in r for r in rows)
    lines = [
        "# Combination rules alone: polytask against peer libraries",
        "",
        "Written by `scripts/bench_aggregators.py --versus-peers` (do not edit by hand).",
        f"`aggregate(J)` on a K×P float32 Jacobian, {args.threads} thread(s), "
        f"{device_name(torch.device('cpu'))}, torch {torch.__version__}: {args.rounds} "
        f"interleaved rounds (polytask, then each peer, then the baseline, in every round), "
        f"each the best of {args.repeats} calls. ms = the best round; a ratio = the median "
        "over rounds of the ratio within a round (below 1: polytask faster).",
        "Peers: torchjd (optional; "
        + ("installed)." if peer else "**not installed in this run: no measured ratio**)."),
        "The rules are the same methods, not always the same variants (e.g. MGDA's solver, "
        "CAGrad's solver).",
    ]
    if prev:
        lines.append(
            f"`previous` = polytask from `{args.baseline_label or args.baseline_src}`, "
            "timed in a child process in the same rounds; `× previous` = now / then."
        )
    if proj:
        lines.append(
            f"`recorded` = the torchjd time and ratio of the earlier run in "
            f"`{args.recorded}` (another day's machine load); `projected` = recorded "
            "ratio × (`× previous`): the ratio to expect, not a measurement."
        )
    if args.note:
        lines += ["", f"> {args.note}"]
    head = ["method", "K", "P", "polytask ms"]
    if peer:
        head += ["torchjd ms", "ratio"]
    if prev:
        head += ["previous ms", "× previous"]
    if proj:
        head += ["recorded torchjd ms", "recorded ratio", "projected ratio"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(r, key, fmt="{:.2f}"):
        return fmt.format(r[key]) if key in r and r[key] == r[key] else ""

    for r in sorted(rows, key=lambda r: (r["tasks"], r["method"])):
        cells = [r["method"], str(r["tasks"]), str(r["params"]), cell(r, "polytask_ms")]
        if peer:
            cells += [cell(r, "torchjd_ms"), cell(r, "ratio")]
        if prev:
            cells += [cell(r, "previous_ms"), cell(r, "vs_previous")]
        if proj:
            cells += [
                cell(r, "recorded_torchjd_ms"),
                cell(r, "recorded_ratio"),
                cell(r, "projected_ratio"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(rows, args, device, rules) -> str:
    lines = [
        "# Gradient aggregation: time per step and peak memory",
        "",
        "Written by `scripts/bench_aggregators.py` (do not edit by hand). One training step",
        "(zero_grad, forward, balancer backward, Adam step), best of "
        f"{args.steps} steps after {args.warmup} warm-up steps, on {device_name(device)} with "
        f"{torch.get_num_threads()} thread(s), torch {torch.__version__}, Python "
        f"{platform.python_version()}. Time and peak memory are relative to equal weighting "
        "(`ew`) on the same model and K.",
        "",
        "Paths: `jac-loop` / `jac-batched` = full K×P Jacobian (loop of autograd calls / one "
        "vmapped call); `gramian` = K×K Gramian by Jacobian-vector products holding one task "
        "gradient at a time (`jacobian_memory_limit=0`), then one weighted backward; "
        "`gramian-blocks` = the Gramian accumulated one parameter tensor at a time "
        "(`max_block_numel=1`); `rep` = gradients of the "
        'shared representation (the cheap "-ub" mode). Peak memory = tensors alive before the '
        "step (parameters, Adam state, batch) + the high-water mark of allocations during it.",
        "`jacobian-only` is equal weighting computed through the Jacobian path (the sum of "
        "its rows): the cost of the K per-task gradients alone, with a free combination "
        "rule — the floor of every Jacobian method on that path.",
        "",
    ]
    if args.note:
        lines += [f"> {args.note}", ""]
    ks = sorted({k for _, k in rules})
    lines += [
        "## The combination rule alone",
        "",
        "Microseconds per call of the rule on the K×K Gramian (`weights_from_gramian`; "
        "GradDrop and MoCo: `aggregate` on a K×2000 Jacobian), best of 30:",
        "",
        "| method | " + " | ".join(f"K = {k}" for k in ks) + " |",
        "|---|" + "---:|" * len(ks),
    ]
    for name in dict.fromkeys(n for n, _ in rules):
        lines.append(f"| {name} | " + " | ".join(f"{rules[(name, k)]:.0f}" for k in ks) + " |")
    lines.append("")
    for model in dict.fromkeys(r["model"] for r in rows):
        for k in dict.fromkeys(r["tasks"] for r in rows if r["model"] == model):
            sel = [r for r in rows if r["model"] == model and r["tasks"] == k]
            ew = next(r for r in sel if r["method"] == "ew")
            lines += [
                f"## {model.upper()}, K = {k}",
                "",
                f"Equal weighting: {ew['ms']:.2f} ms per step, {ew['peak_mib']:.1f} MiB peak.",
                "",
                "| method | path | ms / step | × ew time | peak MiB | × ew memory |",
                "|---|---|---:|---:|---:|---:|",
            ]
            for r in sel:
                lines.append(
                    f"| {r['method']} | {r['path']} | {r['ms']:.2f} | {r['time_ratio']:.2f} | "
                    f"{r['peak_mib']:.1f} | {r['mem_ratio']:.2f} |"
                )
            lines.append("")
    return "\n".join(lines)


def parse_log(path: str) -> list[dict]:
    """The rows printed by an earlier run (lines ``model K=k method path ms ... MiB ...``)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) != 10 or not parts[1].startswith("K="):
            continue
        rows.append(
            {
                "model": parts[0],
                "tasks": int(parts[1][2:]),
                "method": parts[2],
                "path": parts[3],
                "ms": float(parts[4]),
                "time_ratio": float(parts[6].rstrip("x")),
                "peak_mib": float(parts[7]),
                "mem_ratio": float(parts[9].rstrip("x")),
            }
        )
    return rows


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--tasks", nargs="+", type=int, default=[2, 10, 40])
    parser.add_argument("--methods", nargs="+", default=None, help="only these (and ew)")
    parser.add_argument("--paths", nargs="+", default=None, choices=list(PATHS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="docs/benchmarks/aggregators.md")
    parser.add_argument(
        "--note", default="", help="a paragraph on the conditions of the run, put under the header"
    )
    parser.add_argument(
        "--from-log",
        default=None,
        help="rebuild the tables from the printed lines of an earlier run",
    )
    parser.add_argument(
        "--versus-peers",
        action="store_true",
        help="time the rules alone against peer libraries (see above)",
    )
    parser.add_argument("--params", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="--versus-peers: interleaved rounds (ratios: median over rounds)",
    )
    parser.add_argument(
        "--baseline-src",
        default=None,
        help="--versus-peers: an earlier polytask src/ tree, timed in the "
        "same rounds (e.g. from `git archive main src`)",
    )
    parser.add_argument(
        "--baseline-label", default=None, help="how the table names the baseline (e.g. a commit)"
    )
    parser.add_argument(
        "--recorded",
        default=None,
        help="--versus-peers: an earlier rules table whose torchjd times give "
        "projected ratios when torchjd is not installed",
    )
    parser.add_argument("--rule-round-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.rule_round_json:  # the child process of --baseline-src
        print(json.dumps(polytask_round(args.tasks, args.params, args.repeats)))
        return 0
    if args.versus_peers:
        rows = peer_rows(args)
        out = Path(
            args.out
            if args.out != "docs/benchmarks/aggregators.md"
            else "docs/benchmarks/aggregator_rules.md"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(peers_markdown(rows, args) + "\n")
        print(f"wrote {out}", file=sys.stderr)
        return 0
    device = torch.device(args.device)
    rows = parse_log(args.from_log) if args.from_log else []
    for model in [] if args.from_log else args.models:
        for k in args.tasks:
            # Equal weighting is re-measured before every configuration and the best of
            # all its measurements is the reference: one unlucky measurement of the
            # reference would otherwise skew every ratio of the block.
            ew_seconds, ew_peak = float("inf"), None
            block = []
            for method, label, options in configurations(None):
                if args.methods and method not in args.methods + ["ew", "jacobian-only"]:
                    continue
                if args.paths and label != "-" and label not in args.paths:
                    continue
                seconds, peak = run_config(model, k, "ew", {}, args, device)
                ew_seconds, ew_peak = min(ew_seconds, seconds), peak
                if method != "ew":
                    seconds, peak = run_config(model, k, method, options, args, device)
                block.append(
                    {
                        "model": model,
                        "tasks": k,
                        "method": method,
                        "path": label,
                        "ms": seconds * 1e3,
                        "peak_mib": peak / 2**20,
                        "peak": peak,
                    }
                )
            for row in block:
                row["time_ratio"] = row["ms"] / (ew_seconds * 1e3)
                row["mem_ratio"] = row.pop("peak") / ew_peak
                if row["method"] == "ew":
                    row["ms"] = ew_seconds * 1e3
                    row["time_ratio"] = 1.0
                rows.append(row)
                print(
                    f"{model} K={k:<3d} {row['method']:12s} {row['path']:12s} "
                    f"{row['ms']:9.2f} ms {row['time_ratio']:6.2f}x  "
                    f"{row['peak_mib']:8.1f} MiB {row['mem_ratio']:6.2f}x",
                    flush=True,
                )
    rules = rule_times(sorted({r["tasks"] for r in rows}))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(rows, args, device, rules) + "\n")
    with open(out.with_suffix(".csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out} and {out.with_suffix('.csv')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
