"""Compare two numerics environments: which differences move numbers, ranked, and a plain verdict.

Each difference gets a weight (3: changes float results in practice, 2: can change
them, 1: rarely does) and a reason; the verdict says whether bitwise equality
should be expected between the two environments, and what to do when it should
not. GPU facts count only when a GPU is present on either side.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

LIKELY, POSSIBLE, RARE = 3, 2, 1
WEIGHT_WORDS = {LIKELY: "likely", POSSIBLE: "possible", RARE: "rare"}
_WEIGHT_PHRASES = {LIKELY: "likely to change numbers", POSSIBLE: "may change numbers", RARE: "rarely changes numbers"}

# The fix each kind of difference calls for.
PORTABLE_FIX = "run both with the portable profile (`ipyrepro check --portable`, `ipyrepro kernel install --portable`)"
FIXES = {
    "cpu_capability": PORTABLE_FIX,
    "cpu_isa": PORTABLE_FIX,
    "threads": PORTABLE_FIX,
    "tf32": "turn TF32 off on both (the portable profile does: `%repro on --portable`)",
    "torch": "install the same torch version on both",
    "gpu": "run both on the same GPU model; different architectures run different kernels",
    "cuda_libraries": "use the same CUDA, cuDNN and cuBLAS versions (the same torch wheel)",
    "seed": "use the same seed and re-seed mode on both",
    "determinism": "use the same determinism settings on both (`%repro on` sets them)",
    "software": "install the same versions on both",
    "cpu": "set MKL_CBWR on both (the portable profile does) so MKL picks the same code path on any CPU",
}


PORTABLE_KINDS = ("cpu_capability", "cpu_isa", "threads", "tf32")  # what the portable profile pins


@dataclass(frozen=True)
class EnvDifference:
    """One field that differs; `kind` groups fields for the verdict and for tying a divergent op to it."""

    field: str
    here: Any
    there: Any
    weight: int
    kind: str
    reason: str

    def text(self, names: tuple[str, str]) -> str:
        return (
            f"{self.field}: {_show(self.here)} {_where(names[0])}, {_show(self.there)} {_where(names[1])} "
            f"({_WEIGHT_PHRASES[self.weight]}: {self.reason})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "values": [self.here, self.there],
            "weight": self.weight,
            "likelihood": WEIGHT_WORDS[self.weight],
            "kind": self.kind,
            "reason": self.reason,
        }


@dataclass
class Explanation:
    """The ranked differences and the verdict; `bitwise_expected` is the answer in one bit."""

    names: tuple[str, str]
    differences: list[EnvDifference] = field(default_factory=list)
    irrelevant: list[str] = field(default_factory=list)  # fields that differ but cannot matter here (e.g. TF32, no GPU)

    @property
    def bitwise_expected(self) -> bool:
        return not any(d.weight >= POSSIBLE for d in self.differences)

    def verdict(self) -> str:
        moving = [d for d in self.differences if d.weight >= POSSIBLE]
        if not moving:
            rare = f" (they differ only in {', '.join(d.field for d in self.differences)}, which rarely moves numbers)"
            return (
                "Bitwise equality expected: same software, same ISA, same precision settings, so a difference is a "
                "bug or hidden randomness" + (rare if self.differences else "")
            )
        top = moving[0]
        fix = FIXES.get(top.kind, "make the two environments the same")
        return f"Bitwise equality not expected: {_phrase(top, self.names)}; {fix}"

    def not_guaranteed(self) -> str:
        """Why a bitwise match between these environments is luck, not a promise, and what makes it one:
        `bitwise equality between these machines is not guaranteed (AVX2 vs AVX512): use --portable for a
        guarantee`."""
        moving = [d for d in self.differences if d.weight >= POSSIBLE]
        if not moving:
            return "bitwise equality between these machines is expected"
        top = moving[0]
        values = f"{_show(top.here)} vs {_show(top.there)}"
        what = values if top.kind == "cpu_capability" else f"{top.field} {values}"
        fix = "use --portable for a guarantee" if top.kind in PORTABLE_KINDS else f"{FIXES.get(top.kind, '')}"
        return f"bitwise equality between these machines is not guaranteed ({what}): {fix or 'make them the same'}"

    def kinds(self) -> list[str]:
        return list(dict.fromkeys(d.kind for d in self.differences if d.weight >= POSSIBLE))

    def lines(self) -> list[str]:
        out = [self.verdict() + "."]
        if self.differences:
            out.append("Environment differences, most likely to change numbers first:")
            out += [f"  {d.text(self.names)}" for d in self.differences]
        else:
            out.append("No environment differences that can change numbers.")
        if self.irrelevant:
            out.append(f"  (also differ, but cannot change numbers here: {', '.join(self.irrelevant)})")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "bitwise_expected": self.bitwise_expected,
            "verdict": self.verdict(),
            "differences": [d.to_dict() for d in self.differences],
            "irrelevant": list(self.irrelevant),
        }


def explain(here: dict[str, Any], there: dict[str, Any], names: tuple[str, str] = ("here", "there")) -> Explanation:
    """Rank what differs between two numerics environments (as `numerics_environment` writes them)."""
    gpu = _has_gpu(here) or _has_gpu(there)
    found: list[EnvDifference] = []
    irrelevant: list[str] = []
    for path, a, b in _differing(here, there):
        rule = _rule(path, gpu)
        if rule is None:
            continue
        weight, kind, reason = rule
        if weight == 0:
            irrelevant.append(path)
            continue
        found.append(EnvDifference(path, a, b, weight, kind, reason))
    found.sort(key=lambda d: (-d.weight, _KIND_ORDER.get(d.kind, 99), _FIELD_ORDER.get(d.field, 9), d.field))
    return Explanation(names, found, irrelevant)


_KIND_ORDER = {
    kind: index
    for index, kind in enumerate(
        ("seed", "cpu_capability", "tf32", "gpu", "cuda_libraries", "torch", "cpu_isa", "threads", "determinism")
    )
}

_FIELD_ORDER = {"gpu.names": 0, "cpu.capability": 0, "threads.intra_op": 0}

# ignored entirely: they describe the reading, not the numerics
_IGNORED = {"schema", "gpu.source", "ipyrepro.enabled", "ipyrepro.portable", "variables.CUDA_VISIBLE_DEVICES"}

_CUDA_PRECISION = ("precision.cuda.", "precision.cudnn.", "precision.fp32_precision", "precision.float32_matmul")


def _rule(path: str, gpu: bool) -> tuple[int, str, str] | None:
    """(weight, kind, reason) for a differing field; weight 0: differs but cannot matter here; None: ignored."""
    if path in _IGNORED:
        return None
    if path == "cpu.capability":
        return LIKELY, "cpu_capability", "ATen runs other vectorised CPU kernels (softmax, conv2d, gelu, reductions)"
    if path in ("variables.ATEN_CPU_CAPABILITY",):
        return POSSIBLE, "cpu_capability", "it caps the CPU kernels ATen dispatches to"
    if path in ("variables.ONEDNN_MAX_CPU_ISA", "variables.DNNL_MAX_CPU_ISA", "variables.MKL_ENABLE_INSTRUCTIONS"):
        return LIKELY, "cpu_isa", "oneDNN / MKL run other kernels (convolutions, matmuls)"
    if path in ("variables.MKL_CBWR", "cpu.mkl", "cpu.onednn", "cpu.blas", "cpu.openmp", "variables.OPENBLAS_CORETYPE"):
        return LIKELY, "cpu_isa", "another BLAS / oneDNN build or code path rounds differently"
    if path in ("threads.intra_op", "variables.OMP_NUM_THREADS", "variables.MKL_NUM_THREADS"):
        return LIKELY, "threads", "parallel reductions (sum, mean, matmul) are split into other chunks"
    if path in ("threads.inter_op", "variables.OPENBLAS_NUM_THREADS"):
        return RARE, "threads", "inter-op threads run independent ops in parallel; each op's result is the same"
    if path == "software.torch":
        return LIKELY, "torch", "kernels and their defaults change between releases"
    if path in ("ipyrepro.seed", "ipyrepro.reseed", "variables.PYTHONHASHSEED"):
        return LIKELY, "seed", "other random numbers (or another set/dict order)"
    if path.startswith("precision."):
        if path.startswith("precision.mkldnn"):
            return LIKELY, "tf32", "oneDNN may compute float32 matmuls and convolutions in bf16 or TF32"
        if path.startswith(_CUDA_PRECISION):
            if not gpu:
                return 0, "tf32", ""
            return LIKELY, "tf32", "TF32 keeps 10 mantissa bits in matmuls and convolutions"
    if path.startswith("gpu.names") or path.startswith("gpu.capability"):
        return (LIKELY, "gpu", "another GPU architecture runs other kernels") if gpu else None
    if path in ("software.cuda", "software.cudnn", "software.cublas", "software.hip"):
        if not gpu:
            return 0, "cuda_libraries", ""
        return LIKELY, "cuda_libraries", "cuDNN / cuBLAS pick other algorithms between versions"
    if path.startswith("determinism."):
        if path.startswith("determinism.cudnn") and not gpu:
            return 0, "determinism", ""
        return POSSIBLE, "determinism", "nondeterministic kernels may run on one side"
    if path in ("variables.CUBLAS_WORKSPACE_CONFIG", "variables.NVIDIA_TF32_OVERRIDE"):
        if not gpu:
            return 0, "cuda_libraries", ""
        kind = "tf32" if path.endswith("TF32_OVERRIDE") else "determinism"
        return LIKELY, kind, "it changes which cuBLAS kernels run"
    if path == "variables.TORCH_ALLOW_TF32_CUBLAS_OVERRIDE":
        return (LIKELY, "tf32", "it turns TF32 on for cuBLAS") if gpu else (0, "tf32", "")
    if path == "software.numpy":
        return POSSIBLE, "software", "numpy's own math (not torch's) may change between releases"
    if path == "cpu.model":
        return RARE, "cpu", "same ISA; only MKL may choose per CPU model (MKL_CBWR pins it)"
    if path in ("gpu.driver", "gpu.cuda_driver"):
        return (
            (RARE, "cuda_libraries", "the driver JIT-compiles PTX only for GPUs the wheel was not built for")
            if gpu
            else None
        )
    if path in ("software.python", "cpu.machine"):
        return (
            (LIKELY, "cpu_capability", "another CPU architecture")
            if path == "cpu.machine"
            else (
                RARE,
                "software",
                "Python's own float formatting and math are stable",
            )
        )
    return RARE, "other", "not known to change numbers"


def _phrase(difference: EnvDifference, names: tuple[str, str]) -> str:
    here, there = _where(names[0]), _where(names[1])
    a, b = _show(difference.here), _show(difference.there)
    phrases = {
        "cpu_capability": f"CPU kernels {a} {here}, {b} {there}",
        "cpu_isa": f"{difference.field.split('.')[-1]} {a} {here}, {b} {there}",
        "threads": f"{_THREAD_NAMES.get(difference.field, difference.field)} {a} {here}, {b} {there}",
        "tf32": f"TF32 / fp32 precision ({difference.field.removeprefix('precision.')}) {a} {here}, {b} {there}",
        "torch": f"torch {a} {here}, {b} {there}",
        "gpu": f"GPU {a} {here}, {b} {there}",
    }
    return phrases.get(difference.kind, f"{difference.field} {a} {here}, {b} {there}")


_THREAD_NAMES = {"threads.intra_op": "intra-op threads", "threads.inter_op": "inter-op threads"}


def _where(name: str) -> str:
    return name if name in ("here", "there") else f"in {name}"


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "none"
    return str(value)


def _has_gpu(env: dict[str, Any]) -> bool:
    names = (env.get("gpu") or {}).get("names")
    return bool(names)


def _differing(a: Any, b: Any, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted path, a, b) for every leaf that differs; a whole GPU list counts as one field."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(dict.fromkeys([*a, *b])):
            yield from _differing(a.get(key), b.get(key), f"{prefix}{key}" if not prefix else f"{prefix}.{key}")
    elif a != b:
        yield prefix, a, b
