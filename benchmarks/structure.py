"""The structure figures of issue #24: lines per package, the largest functions and modules, radon's highest
complexity. `python benchmarks/structure.py [CHECKOUT]` (default: this one); compare two checkouts side by side."""
import ast, pathlib, subprocess, sys, collections
root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[1]) / "src" / "cnnlab"
pkg = collections.Counter(); funcs = []; mods = []
for p in sorted(root.rglob("*.py")):
    text = p.read_text(); n = len(text.splitlines())
    rel = p.relative_to(root)
    pkg[rel.parts[0] if len(rel.parts) > 1 else "(top level)"] += n
    mods.append((n, str(rel)))
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            funcs.append((node.end_lineno - node.lineno + 1, f"{rel}: {node.name}"))
print("| package | lines |"); print("|---|---:|")
for k, v in sorted(pkg.items()): print(f"| {k} | {v} |")
print(f"| **total** | {sum(pkg.values())} |")
print("largest functions:", "; ".join(f"{f} {n}" for n, f in sorted(funcs, reverse=True)[:5]))
print("largest modules:", "; ".join(f"{f} {n}" for n, f in sorted(mods, reverse=True)[:3]))
print("functions > 60 lines:", sum(1 for n, _ in funcs if n > 60), " modules > 400 lines:", sum(1 for n, _ in mods if n > 400))
out = subprocess.run([sys.executable, "-m", "radon", "cc", "-s", "-n", "D", str(root)], capture_output=True, text=True).stdout
cc = subprocess.run([sys.executable, "-m", "radon", "cc", "-s", "-j", str(root)], capture_output=True, text=True).stdout
import json
blocks = [(b["complexity"], f'{k.split("cnnlab/")[-1]}: {b["name"]}') for k, v in json.loads(cc).items() if isinstance(v, list) for b in v]
blocks.sort(reverse=True)
print("radon highest:", "; ".join(f"{n} ({c})" for c, n in blocks[:5]), " blocks > 15:", sum(1 for c, _ in blocks if c > 15))
