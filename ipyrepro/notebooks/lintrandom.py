"""`ipyrepro lint --random`: randomness visible in a notebook's code with no seed call above it.

Read from the code alone (imports resolved through their aliases, top to bottom): calls of torch's,
NumPy's global and `random`'s sampling functions, `torch.nn.init`, the in-place samplers of tensors
(`.normal_()`), and layers whose construction draws random weights (`nn.Linear`). A seed call above (in
an earlier cell, or earlier in the same cell) silences them: `torch.manual_seed`, `np.random.seed`,
`random.seed`, `seed_everything`, `set_seed`, `%repro on` / `%repro seed`, `ipyrepro.enable`. Generators
made with a seed (`np.random.default_rng(0)`) are not global randomness and are not named.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

TORCH_SAMPLERS = frozenset(
    {
        "rand",
        "randn",
        "randint",
        "randperm",
        "rand_like",
        "randn_like",
        "randint_like",
        "normal",
        "bernoulli",
        "multinomial",
        "poisson",
    }
)
TORCH_LAYERS = frozenset(
    {
        "Linear",
        "Bilinear",
        "LazyLinear",
        "Conv1d",
        "Conv2d",
        "Conv3d",
        "ConvTranspose1d",
        "ConvTranspose2d",
        "ConvTranspose3d",
        "Embedding",
        "EmbeddingBag",
        "RNN",
        "LSTM",
        "GRU",
        "RNNCell",
        "LSTMCell",
        "GRUCell",
        "MultiheadAttention",
        "Transformer",
        "TransformerEncoderLayer",
        "TransformerDecoderLayer",
    }
)
NUMPY_NOT_SAMPLING = frozenset(
    {
        "seed",
        "get_state",
        "set_state",
        "Generator",
        "SeedSequence",
        "BitGenerator",
        "PCG64",
        "PCG64DXSM",
        "MT19937",
        "Philox",
        "SFC64",
        "RandomState",
        "default_rng",
    }
)
RANDOM_SAMPLERS = frozenset(
    {
        "random",
        "randint",
        "randrange",
        "choice",
        "choices",
        "shuffle",
        "sample",
        "uniform",
        "gauss",
        "normalvariate",
        "lognormvariate",
        "getrandbits",
        "triangular",
        "betavariate",
        "expovariate",
        "vonmisesvariate",
        "gammavariate",
        "paretovariate",
        "weibullvariate",
        "randbytes",
    }
)
INPLACE_SAMPLERS = frozenset(
    {"uniform_", "normal_", "random_", "bernoulli_", "exponential_", "geometric_", "cauchy_", "log_normal_"}
)
SEED_CALLS = frozenset({"manual_seed", "manual_seed_all", "seed_everything", "set_seed", "seed_all"})


@dataclass
class Aliases:
    """What each imported name stands for (`np` -> `numpy`, `randn` -> `torch.randn`), top to bottom."""

    names: dict[str, str] = field(default_factory=dict)

    def learn(self, tree: ast.AST) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.names[alias.asname] = alias.name
                    else:
                        self.names[alias.name.split(".")[0]] = alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    self.names[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def dotted(self, node: ast.AST) -> str | None:
        """`torch.nn.init.normal_` for the call target `nn.init.normal_` when `nn` is `torch.nn`."""
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        head = self.names.get(node.id, node.id)
        return ".".join([head, *reversed(parts)])


def is_random(name: str, call: ast.Call) -> bool:
    """Whether calling `name` (dotted, aliases resolved) draws from a global random generator."""
    module, _, function = name.rpartition(".")
    if module in ("torch", "torch.random") and function in TORCH_SAMPLERS:
        return True
    if module == "torch.nn.init" and function != "calculate_gain":
        return True
    if module in ("torch.nn", "torch.nn.modules") and function in TORCH_LAYERS:
        return True
    if module == "numpy.random":
        if function == "default_rng" or function == "RandomState":
            return not call.args and not call.keywords  # from the OS's entropy: unseeded
        return function not in NUMPY_NOT_SAMPLING
    return module == "random" and function in RANDOM_SAMPLERS


def is_seed(name: str, call: ast.Call) -> bool:
    """Whether the call seeds a global generator (or runs `%repro on` / `%repro seed`)."""
    module, _, function = name.rpartition(".")
    if function in SEED_CALLS:
        return True
    if function == "seed" and module in ("numpy.random", "random", "ipyrepro") and (call.args or call.keywords):
        return True
    if module == "ipyrepro" and function == "enable":
        return True
    if function == "run_line_magic" and len(call.args) == 2:  # what IPython makes of `%repro on`
        magic, line = (argument.value if isinstance(argument, ast.Constant) else None for argument in call.args)
        return magic == "repro" and isinstance(line, str) and line.split()[:1] in (["on"], ["seed"])
    return False


def random_calls(tree: ast.AST, offset: int, aliases: Aliases, seeded: bool) -> tuple[list[tuple[str, int]], bool]:
    """The unseeded random calls of one cell (dotted name, line), in line order, and whether the generators
    are seeded after it. `aliases` learns the cell's imports."""
    aliases.learn(tree)
    calls = sorted(
        (node for node in ast.walk(tree) if isinstance(node, ast.Call)),
        key=lambda node: (node.lineno, node.col_offset),
    )
    found: list[tuple[str, int]] = []
    for call in calls:
        func = call.func
        name = aliases.dotted(func)
        if isinstance(func, ast.Attribute) and func.attr in INPLACE_SAMPLERS:  # `torch.empty(3).normal_()`
            if not seeded:
                found.append((name or f"Tensor.{func.attr}", call.lineno + offset))
        elif isinstance(func, ast.Attribute) and func.attr == "run_line_magic" and is_seed("run_line_magic", call):
            seeded = True
        elif name is None:
            continue
        elif is_seed(name, call):
            seeded = True
        elif not seeded and is_random(name, call):
            found.append((name, call.lineno + offset))
    return found, seeded
