"""The golden manifest: what every registered model must keep (names, order, shapes,
parameters, MACs), and the README's model table rendered from it.

Regenerate both after an intended architecture change, and say why in the commit:

    python tests/golden/manifest.py
"""

from __future__ import annotations

import hashlib
import json
import math
import os

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models.json")
README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "README.md")
BEGIN, END = "<!-- model-table:begin -->", "<!-- model-table:end -->"


def _digest(variables) -> str:
    lines = "\n".join(f"{v.path} {tuple(v.shape)}" for v in variables)
    return hashlib.sha256(lines.encode()).hexdigest()


def manifest(model) -> dict:
    """Parameter counts, a hash over every variable's path and shape in order, and one
    short hash per layer with variables (so that a change names its layers)."""
    return {
        "params": int(model.count_params()),
        "trainable_params": int(sum(math.prod(v.shape) for v in model.trainable_weights)),
        "variables": len(model.weights),
        "sha256": _digest(model.weights),
        "layers": {layer.name: _digest(layer.weights)[:10] for layer in model.layers
                   if layer.weights},
    }


def differences(model, golden: dict) -> list[str]:
    """What differs between ``model`` and its golden entry, layers named first."""
    now = {**manifest(model), **measures(model)}
    was, new = golden.get("layers", {}), now["layers"]
    found = []
    for name in sorted(set(was) | set(new)):
        if name not in was:
            found.append(f"layer {name}: added")
        elif name not in new:
            found.append(f"layer {name}: removed")
        elif was[name] != new[name]:
            found.append(f"layer {name}: its variables' names or shapes changed")
    found += [f"{key}: {golden.get(key)!r} -> {now[key]!r}" for key in sorted(now)
              if key != "layers" and golden.get(key) != now[key]]
    return found


def measures(model) -> dict:
    """Profile figures kept in the golden file (and shown in the README)."""
    from keras_mobile import profile  # noqa: PLC0415

    p = profile(model)
    return {"macs": p.macs, "fvcore_flops": p.fvcore_flops, "resolution": p.input_shape[0]}


def render_table(golden: dict, papers: dict) -> str:
    """The README's model table (markdown) from the golden file."""
    lines = ["| Model | Input | Trainable params | MACs | Paper (params / MACs / top-1) |",
             "|---|---|---|---|---|"]
    for name, row in golden.items():
        lines.append(f"| {name} | {row['resolution']} | {row['trainable_params']:,} | "
                     f"{row['macs'] / 1e6:.1f}M | {papers.get(name) or '-'} |")
    return "\n".join(lines)


def readme_table() -> str:
    """The table currently between the README's markers."""
    text = open(README).read()
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip()


def main():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras_mobile  # noqa: PLC0415
    from keras_mobile.registry import get_entry  # noqa: PLC0415

    golden = {}
    for name in keras_mobile.list_models():
        model = keras_mobile.get_model(name, weights=None)
        golden[name] = {**manifest(model), **measures(model)}
    _write(GOLDEN, json.dumps(golden, indent=1, sort_keys=True) + "\n")
    table = render_table(golden, {n: get_entry(n).paper for n in golden})
    text = open(README).read()
    text = text[:text.index(BEGIN) + len(BEGIN)] + "\n" + table + "\n" + text[text.index(END):]
    _write(README, text)
    print(f"wrote {len(golden)} models to {GOLDEN} and the README table")


def _write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
