"""The package's import graph has no cycle (README.md, "Layout": config → launch → train → models,
methods, data): every ``import reinit_jax...`` of every module, at module level or inside a
function, read with ``ast``; a cycle is printed as ``a -> b -> a`` with the importing lines."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "reinit_jax"


def modules() -> dict[str, str]:
  """{dotted module name: file path} of every module of the package (``__init__`` as the package)."""
  out = {}
  for dirpath, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
    for f in files:
      if f.endswith(".py"):
        rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3].split(os.sep)
        if rel[-1] == "__init__":
          rel = rel[:-1]
        out[".".join(rel)] = os.path.join(dirpath, f)
  return out


def _type_checking_only(node, parents):
  """True for an import under ``if TYPE_CHECKING:`` (never executed)."""
  p = parents.get(node)
  while p is not None:
    if isinstance(p, ast.If) and "TYPE_CHECKING" in ast.unparse(p.test):
      return True
    p = parents.get(p)
  return False


def imports_of(name: str, path: str, known) -> list[tuple[str, int]]:
  """[(imported module, line)] of the package's modules that ``name`` imports anywhere in its file.

  ``from pkg import x`` names the module ``pkg.x`` when that is a module, else ``pkg`` (x is then an
  attribute its ``__init__`` defines); a package's own ancestors, which Python initializes before
  any of its modules, are not edges.
  """
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
  is_pkg = path.endswith("__init__.py")
  out = []
  for node in ast.walk(tree):
    if _type_checking_only(node, parents):
      continue
    if isinstance(node, ast.Import):
      out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == PACKAGE]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative: resolved against this module's package
        pkg = name.split(".") if is_pkg else name.split(".")[:-1]
        pkg = pkg[:len(pkg) - node.level + 1]
        base = ".".join(pkg + ([base] if base else []))
      if base.split(".")[0] != PACKAGE:
        continue
      for a in node.names:
        sub = f"{base}.{a.name}"
        out.append((sub if sub in known else base, node.lineno))
  return [(m, line) for m, line in out if m != name]


def graph() -> dict[str, dict[str, int]]:
  """{module: {imported module: first line}} over the package."""
  known = modules()
  g = {}
  for name, path in known.items():
    edges = {}
    for m, line in imports_of(name, path, known):
      assert m in known, f"{path}:{line} imports {m}, which is not a module of the package"
      edges.setdefault(m, line)
    g[name] = edges
  return g


def find_cycle(g: dict[str, dict]) -> list[str] | None:
  """A cycle [a, b, ..., a] of ``g`` (iterative DFS, modules in sorted order), or None."""
  state, stack_pos = {}, {}
  for start in sorted(g):
    if state.get(start):
      continue
    path, iters = [start], [iter(sorted(g[start]))]
    state[start], stack_pos[start] = 1, 0
    while path:
      nxt = next(iters[-1], None)
      if nxt is None:
        state[path.pop()] = 2
        iters.pop()
        continue
      if state.get(nxt) == 1:
        return path[path.index(nxt):] + [nxt]
      if not state.get(nxt):
        state[nxt] = 1
        path.append(nxt)
        iters.append(iter(sorted(g.get(nxt, ()))))
  return None


def _show(g, cycle):
  known = modules()
  return "\n".join(f"  {a} -> {b}   ({os.path.relpath(known[a], ROOT)}:{g[a][b]})"
                   for a, b in zip(cycle, cycle[1:]))


def test_find_cycle_finds_one():
  g = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1, "d": 1}, "d": {}}
  assert find_cycle(g) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 1, "b": 1}}) is None


def test_graph_sees_module_and_function_level_imports():
  g = graph()
  assert len(g) >= 40
  assert "reinit_jax.train.build" in g["reinit_jax.train.loop"]  # module level, from-import
  assert "reinit_jax.train.faults" in g["reinit_jax.train.loop"]  # from pkg import submodule
  assert "reinit_jax.train.loop" in g["reinit_jax.train"]  # inside __getattr__ (lazy)
  assert "reinit_jax.launch.grid" in g["reinit_jax.launch.cli"]  # inside a function


def test_import_graph_is_acyclic():
  g = graph()
  cycle = find_cycle(g)
  if cycle:
    print("import cycle:\n" + _show(g, cycle))
  assert cycle is None, "import cycle:\n" + _show(g, cycle)
