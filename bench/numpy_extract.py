"""NumPy yardstick for Chorus's extraction (`npm run bench -- merge --phases extract`): PHLoRA-style
extraction of dim x dim deltas written the way a Python user would (float32, NumPy with OpenBLAS): per
module ΔW = tuned - base, then the randomized SVD of ../shared/reference/numpy_merge_bench.py (2 power
iterations, 10 extra vectors, one QR) and the rank-r factors. The reference script times one rsvd of
one delta; this one times N deltas after a first, and reports the median of each part, so that both
sides are compared like for like and a single noisy run does not decide the ratio.

Run: /usr/bin/python3 numpy_extract.py --dim 4096 --rank 16 --deltas 5
"""
import argparse, json, resource, time
import numpy as np

p = argparse.ArgumentParser()
for name, default in [("dim", 4096), ("rank", 16), ("deltas", 5)]:
    p.add_argument(f"--{name}", type=int, default=default)
a = p.parse_args()
d, r = a.dim, a.rank
rng = np.random.default_rng(0)


def rsvd(M, k, it=2):  # as in numpy_merge_bench.py
    Y = M @ rng.standard_normal((M.shape[1], k + 10)).astype(np.float32)
    for _ in range(it): Y = M @ (M.T @ Y)
    Q, _ = np.linalg.qr(Y)
    u, s, vt = np.linalg.svd(Q.T @ M, full_matrices=False)
    return (Q @ u[:, :k]) * s[:k], vt[:k]


base = (rng.random((d, d), dtype=np.float32) - .5) * .05
whole, alone = [], []
for i in range(a.deltas + 1):
    u = rng.standard_normal((d, 2 * r)).astype(np.float32) / np.sqrt(d)
    v = rng.standard_normal((2 * r, d)).astype(np.float32) / np.sqrt(d)
    tuned = base + u @ v + (rng.random((d, d), dtype=np.float32) - .5) * 1e-4
    t = time.perf_counter()
    M = tuned - base
    B, A = rsvd(M, r)
    t1 = time.perf_counter()
    rsvd(M, r)
    t2 = time.perf_counter()
    if i > 0:  # the first delta warms the allocator and BLAS's threads, as Chorus's bench does
        whole.append(t1 - t)
        alone.append(t2 - t1)
    del M, tuned
print(json.dumps({"numpy": np.__version__, "extract": float(np.median(whole)), "rsvd": float(np.median(alone)),
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
