"""polytask.linear on real multi-task data: every estimator against single-task baselines.

Yeast (Elisseeff & Weston 2001; ``polytask data get yeast``): 14 binary labels, 2,417 genes,
103 features, ``loss="logistic"``, per-task test AUC. Three random splits of the 2,417
genes into 1,500 training (1,200 fit + 300 validation) and 917 test genes (split 0 is a
random split too, not the file's order). Each estimator's strength is chosen on the
validation genes along a warm-started path (mean AUC over tasks), then refit on all 1,500
training genes. Baselines: scikit-learn's LogisticRegression per task, ℓ2 ("ridge") and
ℓ1 ("lasso"), C chosen per task on the same validation genes.

MoleculeACE (van Tilborg et al. 2022; ``polytask data get moleculeace``): 30 ChEMBL
regression targets, each with its own molecules — the long form ``fit(X, y, task=...)`` —
Morgan/ECFP fingerprints (radius 2), ``loss="squared"``, per-task test RMSE. The authors'
per-target train/test split (activity-cliff stratified) is fixed, so the three "splits" are
three random validation hold-outs (10% of the training molecules) of that one split;
strengths are chosen on validation (mean RMSE), refit on all training labels. Baselines:
scikit-learn's Ridge and Lasso per task, alpha chosen per task on validation.

    OMP_NUM_THREADS=1 python scripts/bench_linear_real.py            # Yeast, 3 splits
    OMP_NUM_THREADS=1 python scripts/bench_linear_real.py --dataset moleculeace --bits 256
    OMP_NUM_THREADS=1 python scripts/bench_linear_real.py --quick    # 1 split, short paths

Writes docs/results/linear/<dataset>.md and <dataset>_mtrl_correlation.png (the MTRL task
correlation learned on split 0).
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



def mace_methods(n_path, T):
    """(name, estimator, varied parameter, grid or None) for the squared loss."""
    common = dict(tol=1e-4, max_iter=500)
    smooth = np.geomspace(1.0, 1e-3, n_path)
    full = np.ones((T, T)) - np.eye(T)
    return [
        ("MultiTaskL21 (l2,1)", MultiTaskL21(**common), "alpha", None),
        ("MultiTaskL21 (l1/linf)", MultiTaskL21(q="inf", **common), "alpha", None),
        ("MultiTaskTraceNorm", MultiTaskTraceNorm(**common), "alpha", None),
        ("MultiTaskDirty (beta=1e-3)", MultiTaskDirty(beta=1e-3, **common), "alpha", None),
        ("MeanRegularizedMTL (beta=1e-3)", MeanRegularizedMTL(beta=1e-3, **common), "alpha",
         smooth),
        ("GraphRegularizedMTL (complete graph)", GraphRegularizedMTL(full / T, **common),
         "alpha", smooth),
        ("ClusteredMTL (k=5, beta=1e-3)", ClusteredMTL(5, beta=1e-3, **common), "alpha",
         smooth),
        ("MTRL (alpha=1e-3)", MTRL(alpha=1e-3, **common), "beta", smooth),
    ]


def long_form(split):
    """Rows (molecule, task) with a label: X, y, task index."""
    Y = np.stack([split.targets[t] for t in split.tasks], axis=1).astype(float)
    rows, cols = np.nonzero(~np.isnan(Y))
    return split.x[rows].astype(float), Y[rows, cols], cols


def task_rmse(y, pred, task, T):
    """Per-task RMSE."""
    return np.array([np.sqrt(np.mean((y[task == t] - pred[task == t]) ** 2)) for t in range(T)])


def run_moleculeace(args, n_splits, n_path):
    """Every estimator and the single-task baselines on MoleculeACE (long form, RMSE)."""
    from sklearn.linear_model import Lasso, Ridge

    from polytask.data.moleculeace import MOLECULEACE_TASKS, load_moleculeace

    tasks = MOLECULEACE_TASKS
    T = len(tasks)
    results, chosen, seconds, corr = {}, {}, {}, None
    for seed in range(n_splits):
        import polytask.data.moleculeace as mace

        mace.VAL_SEED = seed  # a different validation hold-out of the same authors' split
        data = load_moleculeace(args.data_dir, n_bits=args.bits)
        Xf, yf, tf = long_form(data.train)
        Xv, yv, tv = long_form(data.val)
        Xt, yt, tt = long_form(data.test)
        Xa, ya, ta = np.vstack([Xf, Xv]), np.concatenate([yf, yv]), np.concatenate([tf, tv])
        for name, cls, grid in (("single-task ridge", Ridge, np.geomspace(1e-1, 1e3, n_path)),
                                ("single-task lasso", Lasso, np.geomspace(1e-4, 1e-1, n_path))):
            start = time.perf_counter()
            pred = np.empty(len(yt))
            for t in range(T):
                f, v, a, te = tf == t, tv == t, ta == t, tt == t
                errs = []
                for g in grid:
                    m = cls(alpha=g).fit(Xf[f], yf[f])
                    errs.append(np.mean((m.predict(Xv[v]) - yv[v]) ** 2) if v.any() else 0.0)
                m = cls(alpha=grid[int(np.argmin(errs))]).fit(Xa[a], ya[a])
                pred[te] = m.predict(Xt[te])
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
            results.setdefault(name, []).append(task_rmse(yt, pred, tt, T))
            print(f"split {seed} {name}: mean RMSE {results[name][-1].mean():.4f}", flush=True)
        for name, est, param, grid in mace_methods(n_path, T):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                alphas, coefs, icpts, _ = regularization_path(
                    est, Xf, yf, task=tf, alphas=grid, n_alphas=n_path, eps=1e-3, param=param)
                val = [np.mean(task_rmse(yv, np.einsum("ij,ij->i", Xv, W[tv]) + b[tv], tv, T))
                       for W, b in zip(coefs, icpts)]
                best = float(alphas[int(np.argmin(val))])
                final = est.set_params(**{param: best}).fit(Xa, ya, task=ta)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
            results.setdefault(name, []).append(task_rmse(yt, final.predict(Xt, task=tt), tt, T))
            chosen.setdefault(name, []).append(best)
            if name.startswith("MTRL") and seed == 0:
                corr = final.task_correlation_
            print(f"split {seed} {name}: mean RMSE {results[name][-1].mean():.4f} "
                  f"({param}={best:.3g})", flush=True)
    title = (f"# polytask.linear on MoleculeACE (30 targets, long form, squared loss, "
             f"Morgan r=2 {args.bits} bits), {n_splits} validation hold-out(s)")
    intro = ("The authors' per-target train/test split; strengths chosen on a 10% "
             "validation hold-out of the training molecules (mean RMSE), refit on all "
             "training labels. Δm is against single-task ridge (lower RMSE is better). "
             "Seconds: all hold-outs, path + refit, 1 thread.")
    report(args, "moleculeace", title, intro, results, chosen, seconds, tasks, "RMSE", False,
           "single-task ridge", corr)


def report(args, stem, title, intro, results, chosen, seconds, tasks, metric, higher,
           baseline, corr):
    """Write the tables (and the MTRL heatmap) for one data set."""
    key = metric.lower()
    base = np.mean(results[baseline], axis=0)
    base_map = {t: {key: float(base[i])} for i, t in enumerate(tasks)}
    hib = {t: {key: higher} for t in tasks}
    lines = [title, "", intro, "",
             f"| method | mean {metric} | ± (splits) | Δm % | chosen strength | seconds |",
             "|---|---:|---:|---:|---|---:|"]
    for name, per_split in results.items():
        per_split = np.array(per_split)
        means = np.nanmean(per_split, axis=1)
        avg = per_split.mean(axis=0)
        dm = delta_m({t: {key: float(avg[i])} for i, t in enumerate(tasks)}, base_map, hib)
        ch = ", ".join(f"{c:.3g}" for c in chosen.get(name, [])) or "per task"
        lines.append(f"| {name} | {means.mean():.4f} | {means.std():.4f} | {dm:+.2f} | {ch} | "
                     f"{seconds[name]:.1f} |")
    short = [t.replace("Class", "C").replace("CHEMBL", "") for t in tasks]
    lines += ["", f"Per-task test {metric} (mean over splits):", "",
              "| method | " + " | ".join(short) + " |", "|---|" + "---:|" * len(tasks)]
    for name, per_split in results.items():
        avg = np.mean(per_split, axis=0)
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in avg) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{stem}.md").write_text(text)
        if corr is not None:
            plot_correlation(corr, out / f"{stem}_mtrl_correlation.png", short, stem)
        print(f"wrote {out / (stem + '.md')}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 split, 4-point paths")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset", choices=("yeast", "moleculeace"), default="yeast")
    parser.add_argument("--bits", type=int, default=1024, help="MoleculeACE fingerprint bits")
    parser.add_argument("--out", default="docs/results/linear")
    args = parser.parse_args(argv)
    n_splits, n_path = (1, 3) if args.quick else (3, 6)
    if args.dataset == "moleculeace":
        run_moleculeace(args, n_splits, n_path)
        return 0
    x, y, _ = read_yeast_csv(resolve_data_dir(args.data_dir) / SUBDIR / FILE)
    y = y.astype(float)
    Cs = np.geomspace(1e-3, 10.0, 3 if args.quick else 5)
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
    title = f"# polytask.linear on Yeast (14 labels, logistic), {n_splits} random split(s)"
    intro = ("1,200 fit + 300 validation / 917 test genes per split; strengths chosen on "
             "validation (mean AUC), refit on 1,500. Δm is against single-task l2 logistic, "
             "per-task test AUC averaged over splits. Seconds: all splits, path + refit, "
             "1 thread.")
    report(args, "yeast", title, intro, results, chosen, seconds, YEAST_LABELS, "AUC", True,
           "single-task logistic, l2 (ridge)", corr)
    return 0


def plot_correlation(corr, path, labels, stem):
    """Heatmap of the MTRL task correlation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 4.0 + 0.12 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 0.7, size))
    im = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_title(f"MTRL task correlation, {stem} (split 0)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
