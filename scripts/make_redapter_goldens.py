#!/usr/bin/env python3
"""Reference values for the Redapter loss (reasoning-intensity-weighted InfoNCE) exactly as the
authors' released code computes it, with gradients from autograd, on fixed random embeddings.

Writes fixtures/goldens/redapter.json (compact JSON). No model is involved: the inputs are seeded
random L2-normalised float64 embeddings (dim 8, all inside a cone around a random centre, as a
trained encoder's are, so that the losses stay moderate at tau 0.02; see make_inputs), and they are
the leaves whose gradients are recorded, so a reimplementation can test its loss and backward pass
without an encoder.

The loss (shared/reference/reasonembed.md §4.2 and §5; the released class
DynQRIBiDecoderOnlyEmbedderModel, VectorSpaceLab/agentic-search @ 1efe855, on FlagEmbedding's
_compute_in_batch_neg_loss / _compute_cross_device_neg_loss, which are the same on one device):
  B queries, each with G passages; passage row i*G is query i's positive, rows i*G+1 .. i*G+G-1
  its hard negatives, and ALL B*G passages are candidates of every query.
    S    = Q · Pᵀ / tau                                        [B, B*G]
    L    = cross_entropy(S, target_i = i*G, reduction="none")  [B]
    if step < start_step:  loss = mean(L)                      (q′ is not even encoded)
    else:
      under no_grad:
        L′ = cross_entropy(Q′ · P.detach()ᵀ / tau, same targets, reduction="none")
        RI = L.detach() / (L′ + 1e-6)
        mapping "clamp": RI ← clamp(RI, clamp_min, clamp_max);  "none": unchanged
        norm    "l1":    w = RI / Σ RI;                         "none": w = RI
      loss = Σ_i w_i · L_i
  The weights are constants for autograd (only L carries gradient) and no gradient reaches Q′.
  step >= start_step is the test: start_step 100 weights from step 100 on (steps 0..99 use the
  mean); start_step -1 (the code default) weights from step 0.

Schema:
  {"generator": "scripts/make_redapter_goldens.py",
   "versions": {"python", "torch", "numpy"},
   "formula": str (the lines above, abridged),
   "cases": [{"name": str, "note": str,
              "B": int, "G": int, "dim": int, "tau": float, "step": int, "start_step": int,
              "mapping": "clamp" | "none", "clamp_min": float, "clamp_max": float,
              "norm": "l1" | "none",
              "q": [[float] * dim] * B,              unit rows
              "q_reason": [[float] * dim] * B,       unit rows (present even when unused)
              "p": [[float] * dim] * (B*G),          unit rows, row i*G = positive of query i
              "expected": {"loss": float,
                           "weighted": bool,          step >= start_step
                           "per_query_loss": [float] * B,                 L
                           "per_query_loss_reason": [float] * B | null,   L′
                           "ri_raw": [float] * B | null,                  L / (L′ + 1e-6)
                           "weights": [float] * B,    the w_i above; for the mean, 1/B each
                           "grad_q": [[float] * dim] * B,      d loss / d q
                           "grad_p": [[float] * dim] * (B*G)}}]}  d loss / d p
  per_query_loss_reason and ri_raw are null when step < start_step: the released code skips the
  q′ forward pass then. d loss / d q_reason is zero by construction and not recorded. All numbers
  are float64 (JSON round-trips them exactly). The same loss in float32 torch, on the same inputs
  rounded to float32, deviates from every recorded value by at most 1.6e-5 × max(1, |value|)
  (scores are 12-50 in size), so 1e-4 is a safe float32 tolerance; a float64 port should agree
  to ~1e-12.

Cases: warm-up (step 99 < start_step 100: plain mean), weighted with every RI strictly inside
(0, 5) (step 100 = start_step, the first weighted step), the upper clamp active (a q′ almost equal
to its positive: L′ ≈ 0, RI > 5), a q′ harder than its query (L′ > L, RI < 1; tau 0.05), mapping
"none" (with an RI > 5 that clamp would have cut), norm "none", start_step -1 at step 0, a
clamp range [1, 3] where both bounds bite, and "infonce": plain InfoNCE with G = 1 (in-batch
negatives only, the mean; q_reason unused).

Checks before writing: the autograd loss equals an independent numpy computation (explicit
max-shifted log-sum-exp) to 1e-12, and both gradients equal the closed form
dS_ij = c_i (softmax(S)_ij - [j = i*G]) / tau (c_i = w_i, or 1/B for the mean), grad_q = dS · P,
grad_p = dSᵀ · Q, to 1e-12 × max(1, |value|); l1 weights sum to 1; q_reason gets no gradient; every
weighted case would give a different gradient if the weights were not detached and a different
loss than the plain mean (so the goldens catch both mistakes); and each case has the property its
note claims.

Usage:  python scripts/make_redapter_goldens.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
GOLDENS = REPO / "fixtures" / "goldens"
SEED = 20260601
EPS = 1e-6  # the released code's guard in L / (L′ + 1e-6)

FORMULA = (
    "S = Q·Pᵀ/tau; L = CE(S, i*G, reduction=none); step < start_step: loss = mean(L); "
    "else (no_grad) L′ = CE(Q′·P.detach()ᵀ/tau, i*G), RI = L.detach()/(L′+1e-6), "
    "clamp: RI ← clamp(RI, clamp_min, clamp_max), l1: w = RI/ΣRI, loss = Σ w·L"
)


# --------------------------------------------------------------------------------------------
# The released loss, in torch (float64)
# --------------------------------------------------------------------------------------------


def per_query_ce(q: torch.Tensor, p: torch.Tensor, group: int, tau: float) -> torch.Tensor:
    """FlagEmbedding's in-batch InfoNCE with reduction='none': [B] losses."""
    scores = q @ p.T / tau  # (B, B*G)
    targets = torch.arange(q.size(0), dtype=torch.long) * group
    return torch.nn.CrossEntropyLoss(reduction="none")(scores, targets)


def redapter_loss(q, q_reason, p, cfg: dict, detach_weights: bool = True):
    """The forward of DynQRIBiDecoderOnlyEmbedderModel (one device). Returns (loss, L, L′, RI, w).
    detach_weights=False is the counterfactual mistake (weights not constants), for a check only."""
    L = per_query_ce(q, p, cfg["G"], cfg["tau"])
    if cfg["step"] < cfg["start_step"]:
        w = torch.full_like(L, 1.0 / L.numel())
        return L.mean(), L, None, None, w
    if detach_weights:
        with torch.no_grad():
            L_r = per_query_ce(q_reason, p.detach(), cfg["G"], cfg["tau"])
            ri = L.detach() / (L_r + EPS)
            w = map_weights(ri, cfg)
    else:
        L_r = per_query_ce(q_reason, p.detach(), cfg["G"], cfg["tau"]).detach()
        ri = L / (L_r + EPS)
        w = map_weights(ri, cfg)
    return (L * w).sum(), L, L_r, ri, w


def map_weights(ri: torch.Tensor, cfg: dict) -> torch.Tensor:
    if cfg["mapping"] == "clamp":
        w = torch.clamp(ri, min=cfg["clamp_min"], max=cfg["clamp_max"])
    elif cfg["mapping"] == "none":
        w = ri
    else:
        raise ValueError(cfg["mapping"])
    if cfg["norm"] == "l1":
        w = w / torch.sum(w)
    elif cfg["norm"] != "none":
        raise ValueError(cfg["norm"])
    return w


# --------------------------------------------------------------------------------------------
# Independent numpy computation, for the cross-check only
# --------------------------------------------------------------------------------------------


def np_losses(q: np.ndarray, p: np.ndarray, group: int, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-query -log softmax(S)[i, i*G] via an explicit max-shifted log-sum-exp; also softmax."""
    s = (q @ p.T) / tau
    m = s.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(s - m).sum(axis=1))
    t = np.arange(q.shape[0]) * group
    return lse - s[np.arange(q.shape[0]), t], np.exp(s - lse[:, None])


def np_reference(case: dict) -> dict:
    q, qr, p = (np.array(case[k], dtype=np.float64) for k in ("q", "q_reason", "p"))
    B, G, tau = case["B"], case["G"], case["tau"]
    L, soft = np_losses(q, p, G, tau)
    if case["step"] < case["start_step"]:
        c, L_r, ri = np.full(B, 1.0 / B), None, None
    else:
        L_r, _ = np_losses(qr, p, G, tau)
        ri = L / (L_r + EPS)
        c = np.clip(ri, case["clamp_min"], case["clamp_max"]) if case["mapping"] == "clamp" else ri.copy()
        if case["norm"] == "l1":
            c = c / c.sum()
    onehot = np.zeros_like(soft)
    onehot[np.arange(B), np.arange(B) * G] = 1.0
    d_s = c[:, None] * (soft - onehot) / tau
    return {"loss": float((c * L).sum()), "L": L, "L_r": L_r, "ri": ri, "w": c,
            "grad_q": d_s @ p, "grad_p": d_s.T @ q}


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def make_inputs(gen: torch.Generator, B: int, G: int, dim: int, spread: float, pos_noise: float,
                neg_noise: float, toward: list[float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Anisotropic embeddings, as trained encoders produce: everything lies in a cone around a
    random centre c, so that all scores are of similar size and the losses stay moderate at
    tau 0.02 (isotropic random vectors in dim 8 give scores ±20 apart and losses of 0 or 10+).
    q_i = unit(c + spread·n); its positive = unit(q_i + pos_noise·n), its hard negatives
    unit(q_i + neg_noise·n), and q′_i = unit(q_i + toward[i]·(positive_i − q_i) + 0.05·n), each
    n a fresh random unit vector. toward 1 puts q′ on its positive (L′ ≈ 0, RI large), 0.5
    halfway (easier than q, RI > 1), a negative value moves it away (harder, RI < 1)."""

    def noise(*shape):
        return unit(torch.randn(*shape, dim, generator=gen, dtype=torch.float64))

    centre = noise(1)[0]
    q = unit(centre + spread * noise(B))
    p = torch.empty(B * G, dim, dtype=torch.float64)
    for i in range(B):
        p[i * G] = unit(q[i] + pos_noise * noise(1)[0])
        for j in range(1, G):
            p[i * G + j] = unit(q[i] + neg_noise * noise(1)[0])
    qr = torch.stack([unit(q[i] + toward[i] * (p[i * G] - q[i]) + 0.05 * noise(1)[0]) for i in range(B)])
    return q, qr, p


def cfg(name, note, B, G, *, dim=8, tau=0.02, step=100, start_step=100, mapping="clamp", clamp_min=0.0,
        clamp_max=5.0, norm="l1", spread=0.5, pos_noise=0.2, neg_noise=0.3, toward=None) -> dict:
    return {"name": name, "note": note, "B": B, "G": G, "dim": dim, "tau": tau, "step": step,
            "start_step": start_step, "mapping": mapping, "clamp_min": clamp_min, "clamp_max": clamp_max,
            "norm": norm, "spread": spread, "pos_noise": pos_noise, "neg_noise": neg_noise,
            "toward": toward if toward is not None else [0.5] * B}


CASES = [
    cfg("warmup", "step 99 < start_step 100: loss = mean(L); q′ is not used (L′, RI null)",
        4, 3, step=99),
    cfg("weighted", "step 100 = start_step (first weighted step); clamp [0,5] and l1; every RI strictly "
        "inside (0, 5), so the clamp does nothing", 4, 3, toward=[0.5, 0.3, 0.6, 0.4]),
    cfg("clamp-upper", "q′ of query 1 is almost its positive: L′ ≈ 0, RI > 5 is clamped to 5",
        5, 2, step=150, toward=[0.3, 1.0, 0.4, 0.3, 0.5]),
    cfg("reason-harder", "tau 0.05; q′ of query 2 is far from its positive: L′ > L, RI < 1",
        3, 4, tau=0.05, step=200, toward=[0.5, 0.3, -1.0]),
    cfg("mapping-none", "mapping none: RI used as is, including one RI > 5 that clamp would cut; l1",
        4, 2, mapping="none", toward=[0.4, 1.3, 0.5, 0.3]),
    cfg("norm-none", "norm none: w = clamp(RI, 0, 5) without normalisation (weights do not sum to 1)",
        3, 3, norm="none", toward=[0.5, 0.3, 0.6]),
    cfg("start-step-minus-one", "start_step -1 (code default) at step 0: weighted from the very first step "
        "(query 3 has RI > 5, clamped)",
        4, 2, step=0, start_step=-1, toward=[0.4, 0.5, 0.3, 0.6]),
    cfg("clamp-range", "clamp [1, 3]: one RI < 1 raised to 1 and one RI > 3 cut to 3; l1",
        5, 3, step=300, clamp_min=1.0, clamp_max=3.0, toward=[0.5, 1.0, -1.0, 0.4, 0.3]),
    cfg("infonce", "plain InfoNCE: G = 1 (positives only, in-batch negatives), mean over queries "
        "(step 0 < start_step 100); q_reason unused", 5, 1, step=0, spread=0.3, pos_noise=0.5),
]


def run_case(index: int, spec: dict) -> dict:
    gen = torch.Generator().manual_seed(SEED + index)
    q0, qr0, p0 = make_inputs(gen, spec["B"], spec["G"], spec["dim"], spec["spread"], spec["pos_noise"],
                              spec["neg_noise"], spec["toward"])
    q = q0.clone().requires_grad_(True)
    qr = qr0.clone().requires_grad_(True)  # a leaf too, to prove nothing flows into it
    p = p0.clone().requires_grad_(True)
    loss, L, L_r, ri, w = redapter_loss(q, qr, p, spec)
    loss.backward()
    assert qr.grad is None, "gradient reached q_reason"
    weighted = spec["step"] >= spec["start_step"]

    case = {k: spec[k] for k in ("name", "note", "B", "G", "dim", "tau", "step", "start_step", "mapping",
                                  "clamp_min", "clamp_max", "norm")}
    case |= {"q": q0.tolist(), "q_reason": qr0.tolist(), "p": p0.tolist()}
    case["expected"] = {
        "loss": loss.item(),
        "weighted": weighted,
        "per_query_loss": L.tolist(),
        "per_query_loss_reason": L_r.tolist() if L_r is not None else None,
        "ri_raw": ri.tolist() if ri is not None else None,
        "weights": w.tolist(),
        "grad_q": q.grad.tolist(),
        "grad_p": p.grad.tolist(),
    }
    if weighted:  # the counterfactual: weights left in the graph must change the gradient
        q2, p2 = q0.clone().requires_grad_(True), p0.clone().requires_grad_(True)
        loss2, *_ = redapter_loss(q2, qr0, p2, spec, detach_weights=False)
        loss2.backward()
        assert abs(loss2.item() - loss.item()) < 1e-12
        diff = (q2.grad - q.grad).abs().max().item() + (p2.grad - p.grad).abs().max().item()
        assert diff > 1e-3, (spec["name"], "undetached weights give the same gradient", diff)
    return case


def close(a, b, tol=1e-12) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return bool(np.all(np.abs(a - b) <= tol * np.maximum(1.0, np.abs(b))))


def cross_check(case: dict) -> None:
    ref, exp, name = np_reference(case), case["expected"], case["name"]
    assert close(exp["loss"], ref["loss"]), (name, exp["loss"], ref["loss"])
    assert close(exp["per_query_loss"], ref["L"]), name
    assert close(exp["weights"], ref["w"]), name
    if ref["L_r"] is None:
        assert exp["per_query_loss_reason"] is None and exp["ri_raw"] is None, name
    else:
        assert close(exp["per_query_loss_reason"], ref["L_r"]) and close(exp["ri_raw"], ref["ri"]), name
    assert close(exp["grad_q"], ref["grad_q"]), name
    assert close(exp["grad_p"], ref["grad_p"]), name
    # loss = Σ w·L, and the unit-norm inputs
    assert close(exp["loss"], float(np.dot(exp["weights"], exp["per_query_loss"]))), name
    for key in ("q", "q_reason", "p"):
        assert close(np.linalg.norm(np.array(case[key]), axis=1), 1.0), (name, key)


def check_properties(cases: dict[str, dict]) -> None:
    """Each case must contain what its note claims."""

    def e(name):
        return cases[name]["expected"]

    for name, case in cases.items():
        ex = case["expected"]
        assert ex["weighted"] == (case["step"] >= case["start_step"]), name
        if case["norm"] == "l1" or not ex["weighted"]:
            assert abs(sum(ex["weights"]) - 1.0) < 1e-12, name
        assert all(v > 0 for v in ex["per_query_loss"]), name
        if ex["weighted"]:  # the weighting must matter, or the case could not tell it from the mean
            assert abs(ex["loss"] - float(np.mean(ex["per_query_loss"]))) > 1e-3, name

    assert not e("warmup")["weighted"] and not e("infonce")["weighted"]
    assert cases["infonce"]["G"] == 1
    ri = e("weighted")["ri_raw"]
    assert all(0 < r < 5 for r in ri), ri
    ri = e("clamp-upper")["ri_raw"]
    assert ri[1] > 5 and all(r < 5 for k, r in enumerate(ri) if k != 1), ri
    w = e("clamp-upper")["weights"]
    assert abs(w[1] - 5.0 / sum(min(r, 5.0) for r in ri)) < 1e-12, w
    ex = e("reason-harder")
    assert cases["reason-harder"]["tau"] == 0.05
    assert ex["per_query_loss_reason"][2] > ex["per_query_loss"][2] and ex["ri_raw"][2] < 1, ex["ri_raw"]
    assert max(e("mapping-none")["ri_raw"]) > 5, e("mapping-none")["ri_raw"]
    ex = e("norm-none")
    assert abs(sum(ex["weights"]) - 1.0) > 0.5 and close(ex["weights"], np.clip(ex["ri_raw"], 0, 5)), ex["weights"]
    assert e("start-step-minus-one")["weighted"] and cases["start-step-minus-one"]["step"] == 0
    ri = e("clamp-range")["ri_raw"]
    assert min(ri) < 1 and max(ri) > 3 and any(1 < r < 3 for r in ri), ri


def main() -> int:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    cases = [run_case(i, spec) for i, spec in enumerate(CASES)]
    for case in cases:
        cross_check(case)
    by_name = {c["name"]: c for c in cases}
    assert len(by_name) == len(cases)
    check_properties(by_name)

    golden = {
        "generator": "scripts/make_redapter_goldens.py",
        "versions": {
            "python": ".".join(map(str, sys.version_info[:3])),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "formula": FORMULA,
        "cases": cases,
    }
    GOLDENS.mkdir(parents=True, exist_ok=True)
    path = GOLDENS / "redapter.json"
    path.write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size} bytes, {len(cases)} cases)")
    for c in cases:
        ex = c["expected"]
        ri = "-" if ex["ri_raw"] is None else " ".join(f"{r:.3f}" for r in ex["ri_raw"])
        print(f"  {c['name']:<22} loss {ex['loss']:.12g}  L {' '.join(f'{v:.3f}' for v in ex['per_query_loss'])}"
              f"  RI {ri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
