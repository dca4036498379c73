"""Documentation references resolve (no JAX needed).

Scanned: the docstrings, comments (and, for heading references, other strings) of every .py file in reinit_jax/, configs/,
bench/, results/, tools/ and launch.py, and every .md file of the repository (runs/ and hidden
folders aside). Checked:

(a) a reference to a heading, written in the one form ``<file>.md, "<Heading>"`` (``README.md,
    "Reliability"``, ``bench/README.md, "Narrow convolutions and kernel draws"``), names a heading
    of that file. Headings are the markdown lines starting with ``#`` (outside code fences),
    compared case-insensitively, with backticks ignored; a heading matches in full, without its
    leading numbering (``1.``, ``(a)``), by that numbering alone, or up to the first `` (``,
    `` — `` or ``: `` (``## Narrow convolutions (`bench_narrow.py`)`` answers to ``"Narrow
    convolutions"``). Other spellings of a heading reference (``README, Reliability``,
    ``bench/README.md, section 10``, ``results/README.md (f)``, ``docs/CONTRACTS.md (Data)``)
    fail, naming the form to use.
(b) every repository path (``reinit_jax/train/loop.py``, ``tests/test_x.py``, ``docs/x.md``,
    ``bench/…``, ``results/…``, ``configs/…``, ``tools/…``) in the markdown files, docstrings and
    comments exists; skipped: paths with a placeholder or wildcard (``results/<study>``,
    ``bench/bench_*.py``), a command's outputs (after ``--out`` or ``--workdir``), the words of
    :data:`NOT_PATHS`, and runs/.
(c) README.md has at most 215 lines and its sections, in order; every docs/*.md is listed in its
    "Documentation" section.
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY_DIRS = ("reinit_jax", "configs", "bench", "results", "tools")
PY_FILES = ("launch.py",)
SKIP_DIRS = {"runs", "node_modules", "__pycache__"}
README_SECTIONS = ("Quick start", "Composing a re-initialization method", "Configs", "Layout",
                   "Launching", "Results", "Reliability", "Testing", "How to extend",
                   "Documentation")
README_MAX_LINES = 215

_MD = r"(?:[\w.-]+/)*[\w.-]+\.md"
# A heading reference: a markdown file (README alone is the top-level README.md), then the heading
# quoted (``, "Heading"``, `` "Heading"``, ``, section "Heading"``), by its numbering
# (``, section 10``, ``, (a)``, `` (f)``), bare after a comma up to the next ``)``, ``,``, ``;``,
# ``:`` or full stop (``, Reliability``), or in parentheses (`` (Data)``).
REF = re.compile(
  rf"(?<![\w/.-])(?P<file>{_MD}|README)(?![\w.])`?"
  r"(?:,? (?:section )?\(?\"(?P<quoted>[^\"]+)\""
  r"|,? section (?P<number>[^),;:\s]+)"
  r"|,? (?P<label>\([a-z0-9]\))"
  r"|, (?P<bare>[A-Z][^),;:\"]*?)(?=[),;:]|\. |\.$|$)"
  r"| \((?P<paren>[A-Z][^)\"]*)\))")
PATH = re.compile(r"(?<![\w/.~$-])(?:reinit_jax|tests|docs|bench|results|configs|tools)/[\w./-]*")
_PLACEHOLDER = set("<{*…$[")
# What a command writes need not exist yet (``--out results/z_cifar10``, ``--workdir=runs/x``).
_OUTPUT = re.compile(r"(--out[= ]|--workdir[= ]|--out-dir[= ])$")
# Path-like words that name no repository file.
NOT_PATHS = {
  "configs/x.py": "an example config name (reinit_jax/launch/sweep.py)",
  "reinit_jax/xla": "the folder under the cache directory (reinit_jax/launch/cli.py)",
}
_NUMBERING = re.compile(r"^(\d+(?:\.\d+)*\.?|\([a-z0-9]+\))\s+")


def _walk(top: str, ext: str):
  for d, dirs, files in os.walk(top):
    dirs[:] = sorted(x for x in dirs if not x.startswith(".") and x not in SKIP_DIRS)
    for f in sorted(files):
      if f.endswith(ext):
        yield os.path.join(d, f)


def _sources() -> list[str]:
  py = [os.path.join(ROOT, f) for f in PY_FILES]
  for d in PY_DIRS:
    py += _walk(os.path.join(ROOT, d), ".py")
  top = [os.path.join(ROOT, f) for f in sorted(os.listdir(ROOT)) if f.endswith(".md")]
  md = top + [p for d in sorted(os.listdir(ROOT))
              if os.path.isdir(os.path.join(ROOT, d)) and not d.startswith(".")
              and d not in SKIP_DIRS for p in _walk(os.path.join(ROOT, d), ".md")]
  return py + md


def _blocks(path: str, strings: bool = False) -> list[tuple[int, str]]:
  """(line, text) of the prose of a file, whitespace collapsed so that a reference may wrap: a .md
  file whole; a .py file's docstrings and comment runs (consecutive comment lines joined), and with
  ``strings`` every other string literal too (messages and help texts cite headings as well)."""
  text = open(path, encoding="utf-8").read()
  if not path.endswith(".py"):
    return [(1, re.sub(r"\s+", " ", text))]
  out, run, run_line, last = [], [], 0, -2
  docstrings = set()
  for node in ast.walk(ast.parse(text)):
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
      body = node.body
      if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
          and isinstance(body[0].value.value, str):
        docstrings.add(body[0].lineno)
  for tok in tokenize.generate_tokens(io.StringIO(text).readline):
    if tok.type == tokenize.COMMENT:
      if tok.start[0] != last + 1 and run:
        out.append((run_line, " ".join(run)))
        run = []
      if not run:
        run_line = tok.start[0]
      run.append(tok.string.lstrip("#").strip())
      last = tok.start[0]
    elif tok.type == tokenize.STRING and (strings or tok.start[0] in docstrings):
      out.append((tok.start[0], re.sub(r"\s+", " ", tok.string)))
  if run:
    out.append((run_line, " ".join(run)))
  return out


def _clean(s: str) -> str:
  return re.sub(r"\s+", " ", s.replace("`", "").replace("**", "")).strip().lower()


def _names(heading: str) -> set[str]:
  """The names a heading answers to (see the module docstring)."""
  full = _clean(heading)
  names = {full}
  m = _NUMBERING.match(full)
  if m:
    names |= {m.group(1).rstrip("."), full[m.end():]}
  for n in list(names):
    names.add(re.split(r" \(| — |: ", n, maxsplit=1)[0].strip())
  return {n for n in names if n}


def headings(path: str) -> list[str]:
  out, fenced = [], False
  for line in open(path, encoding="utf-8"):
    if line.lstrip().startswith("```"):
      fenced = not fenced
    elif not fenced and re.match(r"#{1,6} ", line):
      out.append(line.lstrip("#").strip())
  return out


def _resolve(name: str, where: str) -> str | None:
  for base in (ROOT, os.path.dirname(where)):
    p = os.path.join(base, name)
    if os.path.exists(p):
      return p
  return None


def _rel(p: str) -> str:
  return os.path.relpath(p, ROOT)


def references() -> list[tuple[str, int, str, str]]:
  """(source, line, file, heading) of every heading reference in the scanned files."""
  out = []
  for src in _sources():
    for line, text in _blocks(src, strings=True):
      for m in REF.finditer(text):
        name = "README.md" if m.group("file") == "README" else m.group("file")
        heading = next(g for g in m.groups()[1:] if g is not None)
        out.append((src, line, name, heading))
  return out


def test_heading_references_resolve():
  refs = references()
  broken = []
  for src, line, name, heading in refs:
    target = _resolve(name, src)
    where = f"{_rel(src)}:{line}: {name}, \"{heading}\""
    if target is None:
      broken.append(f"{where}: no file {name}")
    elif not any(_clean(heading) in _names(h) for h in headings(target)):
      broken.append(f"{where}: no such heading in {_rel(target)}")
  assert not broken, ("heading references that name no heading (write them as <file>.md, "
                      "\"<Heading>\"):\n" + "\n".join(broken))
  assert len(refs) > 20, refs  # the scan sees the references it should


def test_repository_paths_exist():
  broken, found = [], 0
  for src in _sources():
    for line, text in _blocks(src):
      for m in PATH.finditer(text):
        path = m.group(0).rstrip(".,")
        nxt = text[m.end():m.end() + 1]
        if nxt and nxt in _PLACEHOLDER or path.endswith("_") or path in NOT_PATHS \
            or _OUTPUT.search(text[max(0, m.start() - 12):m.start()]):
          continue
        found += 1
        if not os.path.exists(os.path.join(ROOT, path)):
          broken.append(f"{_rel(src)}:{line}: {path}")
  assert not broken, "paths that do not exist:\n" + "\n".join(sorted(set(broken)))
  assert found > 100, found


def test_readme_shape():
  lines = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read().splitlines()
  assert len(lines) <= README_MAX_LINES, f"README.md: {len(lines)} lines, at most {README_MAX_LINES}"
  sections = [line[3:].strip() for line in lines if line.startswith("## ")]
  missing = [s for s in README_SECTIONS if s not in sections]
  assert not missing, f"README.md lacks the sections {missing} (has {sections})"
  order = [s for s in sections if s in README_SECTIONS]
  assert order == list(README_SECTIONS), f"README.md's sections out of order: {order}"
  doc = "\n".join(lines[lines.index("## Documentation"):])
  unlisted = [f"docs/{f}" for f in sorted(os.listdir(os.path.join(ROOT, "docs")))
              if f.endswith(".md") and f"docs/{f}" not in doc]
  assert not unlisted, f"not listed in README.md's Documentation section: {unlisted}"
