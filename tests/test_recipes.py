"""Every recipe's resolved config, for every variant, equals the snapshot in tests/data/recipes_snapshot.json.

The snapshot was written from the configs before they were rewritten as readable recipes (issue 16), so a change of
any value, type (int / float, tuple / list) or key of any recipe shows here. After an intended change of a recipe,
rewrite the snapshot and review its diff:

  PYTHONPATH=. python tests/test_recipes.py --write
"""

from __future__ import annotations

import importlib
import json
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "tests" / "data" / "recipes_snapshot.json"

# recipe -> the variant strings (`--config=configs/<recipe>.py:<variant>`; "" = the full-size recipe).
VARIANTS = {
    "ctp": ["", "demo", "tfds", "demo,tfds"],
    "vcop": ["", "demo"],
    "speed": ["", "demo"],
    "supervised": ["", "demo", "dataset=hmdb51", "dataset=kinetics400", "dataset=json", "demo,dataset=hmdb51"],
    "finetune_ucf101": ["", "demo", "split=2", "init=/x/backbone", "recipe=goca", "demo,recipe=goca", "recipe=bad",
                        "split=4"],
    "finetune_hmdb51": ["", "demo", "split=3", "recipe=goca", "demo,recipe=goca,init=/x", "recipe=bad"],
    "goca": ["", "demo", "federated", "demo,federated", "modality=rgb", "demo,modality=flow", "merge=avg",
             "demo,merge=avg", "modality=depth", "merge=max"],
    "fedvssl": ["", "demo", "task=vcop", "demo,task=vcop", "task=speed", "demo,task=speed", "task=goca",
                "demo,task=goca", "strategy=fedavg", "demo,strategy=flower_baseline", "alpha=0.5,beta=0",
                "demo,task=vcop,strategy=fedavg,alpha=0.0"],
    "knn": ["", "demo", "dataset=hmdb51", "dataset=json", "dataset=synthetic", "split=2,init=/a,flow=/b",
            "demo,dataset=hmdb51", "dataset=kinetics400", "split=5"],
    "linear_probe": ["", "demo", "dataset=hmdb51", "recipe=goca", "demo,recipe=goca", "dataset=synthetic",
                     "init=/a,flow=/b", "recipe=bad", "dataset=kinetics400"],
}


def canonical(value):
  """JSON-ready form that keeps what JSON would lose: tuples are {"tuple": [...]}, floats stay floats."""
  if isinstance(value, dict):
    return {str(k): canonical(v) for k, v in sorted(value.items())}
  if isinstance(value, tuple):
    return {"tuple": [canonical(v) for v in value]}
  if isinstance(value, list):
    return [canonical(v) for v in value]
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  return {"repr": repr(value)}


def resolve(recipe: str, variant: str):
  """The recipe's resolved config as `canonical` data, or {"error": "<type>: <message>"} if the variant is refused."""
  module = importlib.import_module(f"configs.{recipe}")
  try:
    config = module.get_config(variant or None)
  except Exception as e:  # noqa: BLE001 - a refused variant is part of the recipe's behaviour
    return {"error": f"{type(e).__name__}: {e}"}
  return canonical(config.to_dict())


def resolve_all() -> dict:
  return {f"{recipe}:{variant}": resolve(recipe, variant) for recipe, variants in VARIANTS.items()
          for variant in variants}


def _differences(old, new, path="config") -> list[str]:
  if isinstance(old, dict) and isinstance(new, dict) and "tuple" not in old:
    out = []
    for key in sorted(set(old) | set(new)):
      if key not in new:
        out.append(f"{path}.{key}: missing (was {old[key]!r})")
      elif key not in old:
        out.append(f"{path}.{key}: new ({new[key]!r})")
      else:
        out += _differences(old[key], new[key], f"{path}.{key}")
    return out
  if json.dumps(old) != json.dumps(new):  # json.dumps: 1 != 1.0, unlike ==
    return [f"{path}: {old!r} -> {new!r}"]
  return []


@pytest.fixture(scope="module")
def snapshot():
  return json.loads(SNAPSHOT.read_text(encoding="utf-8"))


@pytest.mark.parametrize("recipe", sorted(VARIANTS))
def test_recipe_matches_snapshot(recipe, snapshot, monkeypatch):
  monkeypatch.syspath_prepend(str(ROOT))
  differences = []
  for variant in VARIANTS[recipe]:
    key = f"{recipe}:{variant}"
    assert key in snapshot, f"{key} not in {SNAPSHOT.name}; rewrite it (see the module docstring)"
    differences += [f"{key}: {d}" for d in _differences(snapshot[key], resolve(recipe, variant))]
  assert not differences, "\n".join(differences)


def test_snapshot_has_no_stale_entries(snapshot):
  expected = {f"{recipe}:{variant}" for recipe, variants in VARIANTS.items() for variant in variants}
  assert set(snapshot) == expected


def test_differences_sees_type_and_key_changes():
  old = {"a": 1.0, "b": {"tuple": [1, 2]}, "c": {"d": "x"}}
  assert _differences(old, {"a": 1, "b": [1, 2], "c": {"d": "x", "e": 0}}) == [
      "config.a: 1.0 -> 1", "config.b: {'tuple': [1, 2]} -> [1, 2]", "config.c.e: new (0)"]


if __name__ == "__main__":
  if sys.argv[1:] != ["--write"]:
    sys.exit(__doc__)
  sys.path.insert(0, str(ROOT))
  SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
  SNAPSHOT.write_text(json.dumps(resolve_all(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
  print(f"wrote {SNAPSHOT}")
