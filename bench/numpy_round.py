"""NumPy yardstick for Chorus's round benchmark (`npm run bench -- rounds`): the re-factorisation of a
data-parallel weight round (`sync: {mode: weights, method: mean | cat_svd}`) written the way a Python
user would (float32, NumPy with OpenBLAS). R replicas of a rank-r adapter on L layers x (q_proj, v_proj)
of dim x dim: per module, stack the weighted factors (w_k s B_k and A_k), QR of both sides, SVD of the
small core, keep rank r, A's rows at the replicas' RMS row norm and B taking the singular values.

Run: /usr/bin/python3 numpy_round.py --replicas 4 --layers 32 --rank 16 --dim 4096
"""
import argparse, resource, time
import numpy as np

p = argparse.ArgumentParser()
for name, default in [("replicas", 4), ("layers", 32), ("rank", 16), ("dim", 4096)]:
    p.add_argument(f"--{name}", type=int, default=default)
a = p.parse_args()
R, L, r, d = a.replicas, a.layers, a.rank, a.dim
rng = np.random.default_rng(0)
base = [((rng.random((r, d), dtype=np.float32) - .5) * .03, (rng.random((d, r), dtype=np.float32) - .5) * .01)
        for _ in range(2 * L)]
replicas = [[(A * (1 + .01 * rng.standard_normal(A.shape, dtype=np.float32)),
              B * (1 + .01 * rng.standard_normal(B.shape, dtype=np.float32))) for A, B in base] for _ in range(R)]
w = np.full(R, 1.0 / R, dtype=np.float32)
s = 2.0

t = time.perf_counter()
for m in range(2 * L):
    U = np.concatenate([replicas[k][m][1] * (w[k] * s) for k in range(R)], 1)
    V = np.concatenate([replicas[k][m][0] for k in range(R)], 0)
    qu, ru = np.linalg.qr(U); qv, rv = np.linalg.qr(V.T)
    u, sig, vt = np.linalg.svd(ru @ rv.T)
    c = np.sqrt(np.mean([np.sum(replicas[k][m][0] ** 2) / r for k in range(R)]))
    A = (vt[:r] @ qv.T) * c
    B = (qu @ u[:, :r]) * (sig[:r] / (s * c))
secs = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"numpy {np.__version__}: {R} replicas rank {r}, {L} layers x (q,v) {d}x{d}: round {secs:.2f} s "
      f"({secs / (2 * L) * 1000:.1f} ms/module), peak RSS {rss:.0f} MiB")
