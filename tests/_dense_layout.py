"""Small data sets written in the MTAN/LibMTL preprocessed .npy layout, for tests."""

import numpy as np


def write_nyuv2(root, n_train=3, n_val=2, h=8, w=12, classes=13, seed=0):
    """Write a tiny NYUv2 in the preprocessed layout: {split}/{image,label,depth,normal}/i.npy."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for sub in ("image", "label", "depth", "normal"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            np.save(root / split / "image" / f"{i}.npy", rng.random((h, w, 3)).astype(np.float32))
            label = rng.integers(-1, classes, size=(h, w)).astype(np.float32)
            np.save(root / split / "label" / f"{i}.npy", label)
            depth = rng.uniform(0.5, 5, size=(h, w, 1)).astype(np.float32)
            depth[rng.random((h, w)) < 0.2] = 0
            np.save(root / split / "depth" / f"{i}.npy", depth)
            normal = rng.normal(size=(h, w, 3))
            normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
            normal[rng.random((h, w)) < 0.2] = 0
            np.save(root / split / "normal" / f"{i}.npy", normal.astype(np.float32))
    return root
