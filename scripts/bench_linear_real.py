"""polytask.linear on real multi-task data: every estimator against single-task baselines.

Yeast (Elisseeff & Weston 2001; ``polytask data get yeast``): 14 binary labels, 2,417 genes,
103 features, ``loss="logistic"``, per-task test AUC. Three random splits of the 2,417
genes into 1,500 training (1,200 fit + 300 validation) and 917 test genes (split 0 is a
random split too, not the file's order). Each estimator's strength is chosen on the
validation genes along a warm-started path (mean AUC over tasks), then refit on all 1,500
training genes. Baselines: scikit-learn's LogisticRegression per task, ℓ2 ("ridge") and
ℓ1 ("lasso"), C chosen per task on the same validation genes.

    OMP_NUM_THREADS=1 python scripts/bench_linear_real.py            # 3 splits
    OMP_NUM_THREADS=1 python scripts/bench_linear_real.py --quick    # 1 split, short paths

Writes docs/results/linear/yeast.md and docs/results/linear/yeast_mtrl_correlation.png
(the MTRL task correlation learned on split 0).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from polytask.data.paths import resolve_data_dir
from polytask.data.yeast import FILE, SUBDIR, YEAST_LABELS, read_yeast_csv
from polytask.linear import (
    MTRL,
    ClusteredMTL,
    GraphRegularizedMTL,
    MeanRegularizedMTL,
    MultiTaskDirty,
    MultiTaskL21,
    MultiTaskTraceNorm,
    regularization_path,
)
from polytask.metrics import delta_m


def splits(n, n_train, n_val, count):
    """``count`` random (fit, val, test) row splits."""
    for seed in range(count):
        perm = np.random.default_rng(seed).permutation(n)
        yield seed, perm[n_val:n_train], perm[:n_val], perm[n_train:]


def task_aucs(Y, scores):
    """Per-task AUC (NaN where a task has one class only)."""
    out = []
    for t in range(Y.shape[1]):
        y = Y[:, t]
        out.append(roc_auc_score(y, scores[:, t]) if 0 < y.sum() < len(y) else np.nan)
    return np.array(out)


def single_task(X_fit, Y_fit, X_val, Y_val, X_all, Y_all, X_test, penalty, Cs):
    """Per-task LogisticRegression, C by validation AUC, refit on fit+val."""
    scores = np.empty((X_test.shape[0], Y_fit.shape[1]))
    solver = "liblinear" if penalty == "l1" else "lbfgs"
    for t in range(Y_fit.shape[1]):
        best, best_c = -np.inf, Cs[0]
        for c in Cs:
            m = LogisticRegression(C=c, l1_ratio=1.0 if penalty == "l1" else 0.0, solver=solver,
                                   max_iter=2000)
            m.fit(X_fit, Y_fit[:, t])
            auc = roc_auc_score(Y_val[:, t], m.decision_function(X_val))
            if auc > best:
                best, best_c = auc, c
        m = LogisticRegression(C=best_c, l1_ratio=1.0 if penalty == "l1" else 0.0,
                               solver=solver, max_iter=2000)
        scores[:, t] = m.fit(X_all, Y_all[:, t]).decision_function(X_test)
    return scores


def label_graph(Y):
    """Task graph from the training labels: positive part of their correlation."""
    C = np.corrcoef(Y.T)
    A = np.clip(np.nan_to_num(C), 0.0, None)
    np.fill_diagonal(A, 0.0)
    return A


def methods(Y_fit, n_path):
    """(name, estimator, varied parameter, grid or None)."""
    common = dict(loss="logistic", tol=1e-4, max_iter=500)
    smooth = np.geomspace(1.0, 1e-3, n_path)
    return [
        ("MultiTaskL21 (l2,1)", MultiTaskL21(**common), "alpha", None),
        ("MultiTaskL21 (l1/linf)", MultiTaskL21(q="inf", **common), "alpha", None),
        ("MultiTaskTraceNorm", MultiTaskTraceNorm(**common), "alpha", None),
        ("MultiTaskDirty (beta=0.01)", MultiTaskDirty(beta=0.01, **common), "alpha", None),
        ("MeanRegularizedMTL (beta=1e-3)", MeanRegularizedMTL(beta=1e-3, **common), "alpha",
         smooth),
        ("GraphRegularizedMTL (label graph)",
         GraphRegularizedMTL(label_graph(Y_fit), **common), "alpha", smooth),
        ("ClusteredMTL (k=3, beta=1e-3)", ClusteredMTL(3, beta=1e-3, **common), "alpha",
         smooth),
        ("MTRL (alpha=1e-3)", MTRL(alpha=1e-3, **common), "beta", smooth),
    ]


def run_method(est, param, grid, n_path, X_fit, Y_fit, X_val, Y_val, X_all, Y_all, X_test):
    """Pick ``param`` on the validation rows along a warm-started path, refit, score test."""
    alphas, coefs, intercepts, _ = regularization_path(
        est, X_fit, Y_fit, alphas=grid, n_alphas=n_path, eps=1e-3, param=param
    )
    val = [np.nanmean(task_aucs(Y_val, X_val @ W.T + b)) for W, b in zip(coefs, intercepts)]
    best = float(alphas[int(np.nanargmax(val))])
    final = est.set_params(**{param: best}).fit(X_all, Y_all)
    return final.decision_function(X_test), best, final


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 split, 4-point paths")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="docs/results/linear")
    args = parser.parse_args(argv)
    n_splits, n_path = (1, 3) if args.quick else (3, 6)
    x, y, _ = read_yeast_csv(resolve_data_dir(args.data_dir) / SUBDIR / FILE)
    y = y.astype(float)
    Cs = np.geomspace(1e-3, 1e2, 3 if args.quick else 6)
    results: dict[str, list[np.ndarray]] = {}
    chosen: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    corr = None
    for seed, fit_rows, val_rows, test_rows in splits(len(x), 1500, 300, n_splits):
        train_rows = np.concatenate([fit_rows, val_rows])
        mu, sd = x[train_rows].mean(0), x[train_rows].std(0)
        sd = np.where(sd > 0, sd, 1.0)
        xs = (x - mu) / sd
        parts = (xs[fit_rows], y[fit_rows], xs[val_rows], y[val_rows], xs[train_rows],
                 y[train_rows], xs[test_rows])
        Y_test = y[test_rows]
        for name, penalty in (("single-task logistic, l2 (ridge)", "l2"),
                              ("single-task logistic, l1 (lasso)", "l1")):
            start = time.perf_counter()
            scores = single_task(*parts, penalty, Cs)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
            results.setdefault(name, []).append(task_aucs(Y_test, scores))
            print(f"split {seed} {name}: mean AUC {np.nanmean(results[name][-1]):.4f}",
                  flush=True)
        for name, est, param, grid in methods(y[fit_rows], n_path):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                scores, best, final = run_method(est, param, grid, n_path, *parts)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
            results.setdefault(name, []).append(task_aucs(Y_test, scores))
            chosen.setdefault(name, []).append(best)
            if name.startswith("MTRL") and seed == 0:
                corr = final.task_correlation_
            print(f"split {seed} {name}: mean AUC {np.nanmean(results[name][-1]):.4f} "
                  f"({param}={best:.3g})", flush=True)
    base = np.mean(results["single-task logistic, l2 (ridge)"], axis=0)
    base_map = {t: {"auc": float(base[i])} for i, t in enumerate(YEAST_LABELS)}
    hib = {t: {"auc": True} for t in YEAST_LABELS}
    lines = [
        f"# polytask.linear on Yeast (14 labels, logistic), {n_splits} random split(s)",
        "",
        "1,200 fit + 300 validation / 917 test genes per split; strengths chosen on "
        "validation (mean AUC), refit on 1,500. Δm is against single-task l2 logistic, "
        "per-task test AUC averaged over splits. Seconds: all splits, path + refit, "
        "1 thread.",
        "",
        "| method | mean AUC | ± (splits) | Δm % | chosen strength | seconds |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for name, per_split in results.items():
        per_split = np.array(per_split)
        means = np.nanmean(per_split, axis=1)
        avg = per_split.mean(axis=0)
        dm = delta_m({t: {"auc": float(avg[i])} for i, t in enumerate(YEAST_LABELS)},
                     base_map, hib)
        ch = ", ".join(f"{c:.3g}" for c in chosen.get(name, [])) or "C per task"
        lines.append(f"| {name} | {means.mean():.4f} | {means.std():.4f} | {dm:+.2f} | {ch} | "
                     f"{seconds[name]:.1f} |")
    lines += ["", "Per-task test AUC (mean over splits):", "",
              "| method | " + " | ".join(t.replace("Class", "C") for t in YEAST_LABELS) + " |",
              "|---|" + "---:|" * len(YEAST_LABELS)]
    for name, per_split in results.items():
        avg = np.mean(per_split, axis=0)
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in avg) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    if not args.quick:
        out.mkdir(parents=True, exist_ok=True)
        (out / "yeast.md").write_text(text)
        if corr is not None:
            plot_correlation(corr, out / "yeast_mtrl_correlation.png")
        print(f"wrote {out / 'yeast.md'}")
    return 0


def plot_correlation(corr, path):
    """Heatmap of the MTRL task correlation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    im = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1)
    labels = [t.replace("Class", "C") for t in YEAST_LABELS]
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_title("MTRL task correlation, Yeast (split 0)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
