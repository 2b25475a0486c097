"""Annotation formats: CtP / FedVSSL JSON lists, CtP txt lists, Kinetics CSV, UCF-101 and HMDB-51 official splits.

Every reader returns ``list[VideoRecord]`` with **0-based** labels (-1 when a file carries no label) and resolves each
video's path as ``os.path.join(data_root, path_template.format(...))``. Template fields:

* ``{name}``: the annotation name (e.g. ``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01``, ``taking_a_shower/<id>_...``),
* ``{stem}``: the last path component of the name, ``{dirname}``: everything before it,
* ``{ext}``: the original file extension with its dot (UCF-101 / HMDB-51 lists, else ""),
* ``{class_name}``: the class name when the reader knows it (Kinetics, UCF-101, HMDB-51, else ``{dirname}``).

Common templates: CtP UCF/HMDB ``zips/{name}.zip``; CtP/FedVSSL K400 ``{name}/RGB_frames.zip``; raw videos
``videos/{name}.mp4`` or ``{name}{ext}``. An optional ``flow_template`` fills ``VideoRecord.flow_path`` (GOCA).

Malformed input raises ``AnnotationError`` naming the file and the line (or JSON entry).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from typing import Any, Iterable, Mapping, Sequence


class AnnotationError(ValueError):
  """Malformed annotation file; the message names the file and line / entry."""


@dataclasses.dataclass(frozen=True)
class VideoRecord:
  """One video of a dataset.

  Attributes:
    path: resolved path of the video (container file or CtP frame zip).
    label: 0-based class index, -1 if unknown.
    name: the annotation's name of the video (used in written annotation files).
    flow_path: resolved path of the optical-flow video / zip (two-stream models), or None.
  """

  path: str
  label: int
  name: str
  flow_path: str | None = None


# ----------------------------------------------------------------------------------------------------------------
# Path resolution


def resolve_path(name: str, data_root: str | os.PathLike | None, path_template: str = "{name}", **fields: Any) -> str:
  """``data_root / path_template.format(name=..., stem=..., dirname=..., ext=..., class_name=..., **fields)``."""
  dirname, stem = os.path.split(name)
  values = {"name": name, "stem": stem, "dirname": dirname, "ext": "", "class_name": dirname}
  values.update({k: v for k, v in fields.items() if v is not None})
  try:
    rel = path_template.format(**values)
  except (KeyError, IndexError, ValueError) as e:
    raise AnnotationError(
        f"path template {path_template!r}: unknown or bad field {e}; known fields: {sorted(values)}") from None
  if data_root is None or os.path.isabs(rel):
    return rel
  return os.path.join(os.fspath(data_root), rel)


def _make_record(name: str, label: int, data_root, path_template: str, flow_template: str | None,
                 **fields: Any) -> VideoRecord:
  path = resolve_path(name, data_root, path_template, **fields)
  flow = resolve_path(name, data_root, flow_template, **fields) if flow_template else None
  return VideoRecord(path=path, label=label, name=name, flow_path=flow)


def _read_lines(path) -> list[str]:
  path = os.fspath(path)
  try:
    with open(path, "r", encoding="utf-8-sig") as f:
      return f.read().splitlines()
  except FileNotFoundError:
    raise AnnotationError(f"{path}: annotation file not found") from None
  except UnicodeDecodeError as e:
    raise AnnotationError(f"{path}: not UTF-8 text ({e})") from None


def _parse_label(text: str, where: str) -> int:
  """A 1-based integer label -> 0-based."""
  try:
    value = int(text)
  except ValueError:
    raise AnnotationError(f"{where}: label {text!r} is not an integer") from None
  if value < 1:
    raise AnnotationError(f"{where}: label {value} is not a 1-based class id (>= 1)")
  return value - 1


# ----------------------------------------------------------------------------------------------------------------
# CtP / FedVSSL JSON


def parse_json_list(path) -> list[tuple[str, int, dict]]:
  """Parses a CtP / FedVSSL JSON list ``[{"name": str, "label": int (1-based)}, ...]``.

  Returns:
    [(name, 0-based label or -1 if the entry has no label, raw entry dict)].
  """
  path = os.fspath(path)
  try:
    with open(path, "r", encoding="utf-8-sig") as f:
      data = json.load(f)
  except FileNotFoundError:
    raise AnnotationError(f"{path}: annotation file not found") from None
  except json.JSONDecodeError as e:
    raise AnnotationError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
  if not isinstance(data, list):
    raise AnnotationError(f"{path}: expected a JSON list of {{\"name\", \"label\"}} entries, got {type(data).__name__}")
  out = []
  for i, entry in enumerate(data):
    where = f"{path}: entry #{i}"
    if not isinstance(entry, dict) or "name" not in entry:
      raise AnnotationError(f"{where}: expected an object with a \"name\" key, got {str(entry)[:80]!r}")
    name = entry["name"]
    if not isinstance(name, str) or not name:
      raise AnnotationError(f"{where}: \"name\" must be a non-empty string, got {name!r}")
    if "label" in entry and entry["label"] is not None:
      label = entry["label"]
      if isinstance(label, bool) or not isinstance(label, int):
        raise AnnotationError(f"{where} ({name}): \"label\" must be an int, got {label!r}")
      label = _parse_label(str(label), f"{where} ({name})")
    else:
      label = -1
    out.append((name, label, entry))
  return out


def read_json_list(path, data_root=None, path_template: str = "{name}", flow_template: str | None = None
                  ) -> list[VideoRecord]:
  """Reads a CtP / FedVSSL JSON list (e.g. ``train_split_1.json``, ``client_dist{k}.json``); labels 1-based -> 0-based."""
  return load_annotations(path, data_root, "json", path_template, flow_template)


def file_entry(record: VideoRecord) -> dict[str, Any]:
  """A record as a CtP / FedVSSL file entry ``{"name", "label" (1-based)}``; label -1 gives no "label" key."""
  return {"name": record.name, "label": record.label + 1} if record.label >= 0 else {"name": record.name}


def file_entries(records_or_entries: Iterable[VideoRecord | Mapping[str, Any]]) -> list[dict[str, Any]]:
  """VideoRecords (0-based labels) or file-format dicts -> ``{"name", "label" (1-based)}`` dicts (copies).

  ``VideoRecord`` labels are written +1 (label -1 gives no "label" key, see ``file_entry``); dicts are taken as given
  (already in the file format, i.e. 1-based).

  Raises:
    TypeError: an item is neither a ``VideoRecord`` nor a mapping with a "name" key.
  """
  out = []
  for i, r in enumerate(records_or_entries):
    if isinstance(r, VideoRecord):
      out.append(file_entry(r))
    elif isinstance(r, Mapping) and "name" in r:
      out.append(dict(r))
    else:
      raise TypeError(f"entry #{i}: expected a VideoRecord or a {{'name', 'label'}} dict, got {r!r}")
  return out


def write_json_list(records_or_entries: Iterable[VideoRecord | Mapping[str, Any]], path) -> None:
  """Writes the CtP / FedVSSL JSON format ``[{"name", "label" (1-based)}]`` of ``file_entries(records_or_entries)``."""
  entries = file_entries(records_or_entries)
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(entries, f, indent=2)
    f.write("\n")


# ----------------------------------------------------------------------------------------------------------------
# CtP txt


def parse_txt_list(path) -> list[tuple[str, int, int, str]]:
  """Parses a CtP txt list: one ``<name> <label (1-based)>`` per line (blank lines and ``#`` comments skipped).

  A line with a single token is an unlabeled video (label -1).

  Returns:
    [(name, 0-based label or -1, 1-based line number, raw line)].
  """
  path = os.fspath(path)
  out = []
  for lineno, line in enumerate(_read_lines(path), start=1):
    text = line.strip()
    if not text or text.startswith("#"):
      continue
    parts = text.rsplit(None, 1)
    if len(parts) == 1:
      out.append((parts[0], -1, lineno, line))
      continue
    name, label_text = parts
    if not re.fullmatch(r"[+-]?\d+", label_text):
      raise AnnotationError(f"{path}:{lineno}: expected '<name> <label>', got {text!r}")
    out.append((name, _parse_label(label_text, f"{path}:{lineno}"), lineno, line))
  return out


def read_txt_list(path, data_root=None, path_template: str = "{name}", flow_template: str | None = None
                 ) -> list[VideoRecord]:
  """Reads a CtP txt list ``<name> <label>`` (1-based labels, e.g. CtP's HMDB-51 lists)."""
  return load_annotations(path, data_root, "txt", path_template, flow_template)


def write_txt_list(records: Iterable[VideoRecord], path) -> None:
  """Writes records as a CtP txt list ``<name> <label + 1>`` (unlabeled records: the name alone)."""
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    for r in records:
      f.write(f"{r.name} {r.label + 1}\n" if r.label >= 0 else f"{r.name}\n")


# ----------------------------------------------------------------------------------------------------------------
# Class indices


def read_class_index(path) -> list[str]:
  """Reads a ``classInd.txt`` (UCF-101, FedVSSL K400): ``<1-based id> <name>`` per line.

  Returns:
    class names ordered by id; ``names[k]`` is the class of 0-based label k.
  """
  path = os.fspath(path)
  by_id: dict[int, str] = {}
  for lineno, line in enumerate(_read_lines(path), start=1):
    text = line.strip()
    if not text or text.startswith("#"):
      continue
    parts = text.split(None, 1)
    if len(parts) != 2 or not parts[0].isdigit():
      raise AnnotationError(f"{path}:{lineno}: expected '<id> <class name>', got {text!r}")
    cid = int(parts[0])
    if cid in by_id:
      raise AnnotationError(f"{path}:{lineno}: class id {cid} appears twice")
    by_id[cid] = parts[1].strip()
  if not by_id:
    raise AnnotationError(f"{path}: no classes")
  ids = sorted(by_id)
  if ids != list(range(1, len(ids) + 1)):
    raise AnnotationError(f"{path}: class ids must be 1..{len(ids)} without gaps, got {ids[0]}..{ids[-1]}")
  names = [by_id[i] for i in ids]
  if len(set(names)) != len(names):
    raise AnnotationError(f"{path}: duplicate class names")
  return names


def write_class_index(class_names: Sequence[str], path) -> None:
  """Writes ``<1-based id> <name>`` lines."""
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    for i, name in enumerate(class_names, start=1):
      f.write(f"{i} {name}\n")


def _class_key(name: str) -> str:
  """Normalises a class name for matching (Kinetics CSV 'taking a shower' == dir 'taking_a_shower')."""
  return name.strip().strip('"').replace(" ", "_").lower()


def _class_lookup(class_names: Sequence[str], where: str) -> dict[str, int]:
  lookup = {}
  for i, n in enumerate(class_names):
    key = _class_key(n)
    if key in lookup:
      raise AnnotationError(f"{where}: class names {class_names[lookup[key]]!r} and {n!r} collide")
    lookup[key] = i
  return lookup


def _class_names_arg(class_index) -> list[str] | None:
  if class_index is None:
    return None
  if isinstance(class_index, (str, os.PathLike)):
    return read_class_index(class_index)
  return list(class_index)


# ----------------------------------------------------------------------------------------------------------------
# Kinetics CSV


def kinetics_class_dir(label_name: str) -> str:
  """The class directory of a Kinetics label as used by CtP / FedVSSL (spaces -> underscores)."""
  return label_name.strip().replace(" ", "_")


def parse_kinetics_csv(path, class_index=None) -> tuple[list[tuple[str, int, str, int, dict]], list[str], list[str]]:
  """Parses an official Kinetics CSV ``label,youtube_id,time_start,time_end,split[,is_cc]``.

  Args:
    path: the CSV file.
    class_index: classInd.txt path or a class-name list giving the label order; default the sorted class names found
      in the file (the official ``label`` strings; matching ignores case and spaces vs underscores).

  Returns:
    (rows, class_names, fieldnames): rows are ``(name, 0-based label or -1, class_name, line number, raw row dict)`` with
    ``name = {class_dir}/{youtube_id}_{start:06d}_{end:06d}`` (class_dir = label with spaces -> underscores; test files
    without labels give ``{youtube_id}_{start:06d}_{end:06d}``).
  """
  path = os.fspath(path)
  lines = _read_lines(path)
  reader = csv.DictReader(lines)
  fields = [f.strip() for f in (reader.fieldnames or [])]
  required = {"youtube_id", "time_start", "time_end"}
  if not required.issubset(fields):
    raise AnnotationError(f"{path}:1: header must contain {sorted(required)} (and 'label'), got {fields}")
  reader.fieldnames = fields
  parsed = []
  for lineno, row in enumerate(reader, start=2):
    if not any((v or "").strip() for v in row.values()):
      continue
    try:
      start = int(float(row["time_start"]))
      end = int(float(row["time_end"]))
    except (TypeError, ValueError):
      raise AnnotationError(f"{path}:{lineno}: bad time_start/time_end in {row}") from None
    ytid = (row.get("youtube_id") or "").strip()
    if not ytid:
      raise AnnotationError(f"{path}:{lineno}: empty youtube_id")
    label_name = (row.get("label") or "").strip()
    parsed.append((label_name, ytid, start, end, lineno, row))
  names = _class_names_arg(class_index)
  if names is None:
    names = sorted({p[0] for p in parsed if p[0]})
  lookup = _class_lookup(names, path)
  rows = []
  for label_name, ytid, start, end, lineno, row in parsed:
    clip = f"{ytid}_{start:06d}_{end:06d}"
    if label_name:
      key = _class_key(label_name)
      if key not in lookup:
        raise AnnotationError(f"{path}:{lineno}: class {label_name!r} is not in the class index")
      rows.append((f"{kinetics_class_dir(label_name)}/{clip}", lookup[key], label_name, lineno, row))
    else:
      rows.append((clip, -1, "", lineno, row))
  return rows, names, fields


def read_kinetics_csv(path, data_root=None, path_template: str = "{name}", flow_template: str | None = None,
                      class_index=None) -> list[VideoRecord]:
  """Reads an official Kinetics-400/600/700 CSV (see ``parse_kinetics_csv``); e.g. template ``{name}/RGB_frames.zip``."""
  return load_annotations(path, data_root, "kinetics_csv", path_template, flow_template, class_index)


# ----------------------------------------------------------------------------------------------------------------
# UCF-101


def parse_ucf101_split(list_path, class_index_path) -> list[tuple[str, int, str, str, int, str]]:
  """Parses a UCF-101 ``trainlist0X.txt`` / ``testlist0X.txt``.

  Lines are ``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1`` (train, 1-based label) or the path alone (test). The
  label comes from the class directory via classInd; a label given on the line must agree with it.

  Returns:
    [(name without extension, 0-based label, ext, class_name, line number, raw line)].
  """
  list_path = os.fspath(list_path)
  classes = read_class_index(class_index_path)
  lookup = _class_lookup(classes, os.fspath(class_index_path))
  out = []
  for lineno, line in enumerate(_read_lines(list_path), start=1):
    text = line.strip()
    if not text or text.startswith("#"):
      continue
    parts = text.split()
    if len(parts) > 2:
      raise AnnotationError(f"{list_path}:{lineno}: expected '<class>/<video>.avi [label]', got {text!r}")
    video = parts[0].replace("\\", "/")
    if "/" not in video:
      raise AnnotationError(f"{list_path}:{lineno}: {video!r} has no class directory")
    class_name = video.split("/", 1)[0]
    key = _class_key(class_name)
    if key not in lookup:
      raise AnnotationError(f"{list_path}:{lineno}: class {class_name!r} is not in {os.fspath(class_index_path)}")
    label = lookup[key]
    if len(parts) == 2:
      given = _parse_label(parts[1], f"{list_path}:{lineno}")
      if given != label:
        raise AnnotationError(
            f"{list_path}:{lineno}: label {given + 1} disagrees with class {class_name!r} (id {label + 1} in classInd)")
    name, ext = os.path.splitext(video)
    out.append((name, label, ext, class_name, lineno, line))
  return out


def read_ucf101_split(list_path, class_index_path, data_root=None, path_template: str = "{name}{ext}",
                      flow_template: str | None = None) -> list[VideoRecord]:
  """Reads a UCF-101 official split list; ``name`` is ``<Class>/v_<Class>_gXX_cYY`` (CtP's naming, no extension).

  E.g. raw videos: ``data_root=".../UCF-101"`` with the default template; CtP zips: ``zips/{name}.zip``.
  """
  return load_annotations(list_path, data_root, "ucf101", path_template, flow_template, class_index_path)


# ----------------------------------------------------------------------------------------------------------------
# HMDB-51

_HMDB_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<k>\d+)\.txt$")


def hmdb51_class_names(splits_dir) -> list[str]:
  """HMDB-51 class names found in ``<class>_test_split<k>.txt`` files, **sorted**.

  The original CtP script numbers classes in ``os.listdir`` order, which depends on the filesystem; we pin the order
  to sorted class names (pass ``class_names`` to the reader to use another order).
  """
  splits_dir = os.fspath(splits_dir)
  if not os.path.isdir(splits_dir):
    raise AnnotationError(f"{splits_dir}: HMDB-51 splits directory not found")
  classes = set()
  for f in os.listdir(splits_dir):
    m = _HMDB_SPLIT_FILE.match(f)
    if m:
      classes.add(m.group("cls"))
  if not classes:
    raise AnnotationError(f"{splits_dir}: no <class>_test_split<k>.txt files")
  return sorted(classes)


def parse_hmdb51_split(splits_dir, split: int = 1, subset: str = "train", class_names: Sequence[str] | None = None
                       ) -> list[tuple[str, int, str, str, int, str]]:
  """Parses the official HMDB-51 split files for one split and subset.

  Args:
    splits_dir: directory with ``<class>_test_split<k>.txt`` files, lines ``<video>.avi <0|1|2>`` (1 = train,
      2 = test, 0 = unused).
    split: 1, 2 or 3.
    subset: "train" or "test".
    class_names: label order (default: sorted class names, see ``hmdb51_class_names``).

  Returns:
    [(name = video stem, 0-based label, ext, class_name, line number, raw line)] in class order, then file order.
  """
  if subset not in ("train", "test"):
    raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
  if split not in (1, 2, 3):
    raise ValueError(f"HMDB-51 split must be 1, 2 or 3, got {split!r}")
  splits_dir = os.fspath(splits_dir)
  found = hmdb51_class_names(splits_dir)
  classes = list(class_names) if class_names is not None else found
  want = "1" if subset == "train" else "2"
  out = []
  for label, cls in enumerate(classes):
    fpath = os.path.join(splits_dir, f"{cls}_test_split{split}.txt")
    if not os.path.isfile(fpath):
      raise AnnotationError(f"{fpath}: split file for class {cls!r} not found")
    for lineno, line in enumerate(_read_lines(fpath), start=1):
      text = line.strip()
      if not text:
        continue
      parts = text.split()
      if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
        raise AnnotationError(f"{fpath}:{lineno}: expected '<video>.avi <0|1|2>', got {text!r}")
      if parts[1] == want:
        stem, ext = os.path.splitext(parts[0])
        out.append((stem, label, ext, cls, lineno, line))
  return out


def read_hmdb51_split(splits_dir, split: int = 1, subset: str = "train", data_root=None,
                      path_template: str = "{class_name}/{name}{ext}", flow_template: str | None = None,
                      class_names: Sequence[str] | None = None) -> list[VideoRecord]:
  """Reads the official HMDB-51 splits (see ``parse_hmdb51_split``); ``name`` is the bare video stem (CtP)."""
  return load_annotations(splits_dir, data_root, "hmdb51", path_template, flow_template, class_names, split, subset)


# ----------------------------------------------------------------------------------------------------------------
# Dispatch

FORMATS = ("json", "txt", "kinetics_csv", "ucf101", "hmdb51")


def detect_format(path) -> str:
  """Guesses the annotation format from the path: directory -> hmdb51, .json, .csv, UCF-101 list names, else txt."""
  path = os.fspath(path)
  if os.path.isdir(path):
    return "hmdb51"
  base = os.path.basename(path).lower()
  if base.endswith(".json"):
    return "json"
  if base.endswith(".csv"):
    return "kinetics_csv"
  if re.fullmatch(r"(train|test)list\d*\.txt", base):
    return "ucf101"
  return "txt"


def _default_class_index(path) -> str | None:
  cand = os.path.join(os.path.dirname(os.fspath(path)), "classInd.txt")
  return cand if os.path.isfile(cand) else None


@dataclasses.dataclass
class AnnotationSource:
  """An annotation file read with its raw items, so a filtered copy can be written in the same format.

  Attributes:
    path: the annotation file (or HMDB-51 splits directory).
    fmt: the resolved format (one of ``FORMATS``).
    records: the parsed records.
    raw: per record, its raw item: the JSON entry dict (json), the original line (txt, ucf101), the CSV row dict
      (kinetics_csv), or None (hmdb51, written back as a CtP txt / JSON list).
    fieldnames: CSV header (kinetics_csv only).
  """

  path: str
  fmt: str
  records: list[VideoRecord]
  raw: list[Any]
  fieldnames: list[str] | None = None


def load_annotation_source(path, data_root=None, fmt: str = "auto", path_template: str | None = None,
                           flow_template: str | None = None, class_index=None, split: int = 1,
                           subset: str = "train", make_record=None) -> AnnotationSource:
  """Reads any supported annotation file; see ``load_annotations`` for the arguments.

  ``make_record(name, label, **fields) -> VideoRecord`` (fields: ``ext``, ``class_name`` when the format knows them)
  replaces the ``data_root`` / ``path_template`` / ``flow_template`` resolution, e.g. a data source's
  ``fedvssl_jax.datasets.Layout.record``, so every file of a dataset resolves names the same way.
  """
  fmt = detect_format(path) if fmt == "auto" else fmt
  if fmt == "csv":
    fmt = "kinetics_csv"
  if fmt not in FORMATS:
    raise ValueError(f"unknown annotation format {fmt!r}; known: auto, {', '.join(FORMATS)}")
  defaults = {"ucf101": "{name}{ext}", "hmdb51": "{class_name}/{name}{ext}"}
  template = path_template if path_template is not None else defaults.get(fmt, "{name}")
  mk = make_record or (lambda name, label, **fields: _make_record(name, label, data_root, template, flow_template,
                                                                  **fields))
  spath = os.fspath(path)
  if fmt == "json":
    items = parse_json_list(path)
    return AnnotationSource(spath, fmt, [mk(n, l) for n, l, _ in items], [raw for _, _, raw in items])
  if fmt == "txt":
    items = parse_txt_list(path)
    return AnnotationSource(spath, fmt, [mk(n, l) for n, l, _, _ in items], [raw for _, _, _, raw in items])
  if fmt == "kinetics_csv":
    rows, _, fieldnames = parse_kinetics_csv(path, class_index)
    records = [mk(n, l, class_name=kinetics_class_dir(c) if c else None) for n, l, c, _, _ in rows]
    return AnnotationSource(spath, fmt, records, [row for *_, row in rows], fieldnames)
  if fmt == "ucf101":
    ci = class_index if class_index is not None else _default_class_index(path)
    if ci is None:
      raise AnnotationError(f"{spath}: UCF-101 lists need a class index (classInd.txt)")
    items = parse_ucf101_split(path, ci)
    return AnnotationSource(spath, fmt, [mk(n, l, ext=e, class_name=c) for n, l, e, c, _, _ in items],
                            [raw for *_, raw in items])
  items = parse_hmdb51_split(path, split, subset, _class_names_arg(class_index))
  return AnnotationSource(spath, fmt, [mk(n, l, ext=e, class_name=c) for n, l, e, c, _, _ in items],
                          [None] * len(items))


def write_annotation_subset(source: AnnotationSource, keep: Sequence[bool], out_path) -> int:
  """Writes the records with ``keep[i]`` True in the source's own format (raw entries / lines / rows as read).

  HMDB-51 split directories are written as a CtP JSON list when ``out_path`` ends in .json, else a CtP txt list.

  Returns:
    the number of records written.
  """
  if len(keep) != len(source.records):
    raise ValueError(f"keep has {len(keep)} flags for {len(source.records)} records of {source.path}")
  out_path = os.fspath(out_path)
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  idx = [i for i, k in enumerate(keep) if k]
  if source.fmt == "json":
    write_json_list([source.raw[i] for i in idx], out_path)
  elif source.fmt in ("txt", "ucf101"):
    with open(out_path, "w", encoding="utf-8") as f:
      for i in idx:
        f.write(source.raw[i].rstrip("\r\n") + "\n")
  elif source.fmt == "kinetics_csv":
    with open(out_path, "w", encoding="utf-8", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=source.fieldnames, extrasaction="ignore")
      writer.writeheader()
      for i in idx:
        writer.writerow(source.raw[i])
  else:  # hmdb51
    recs = [source.records[i] for i in idx]
    if out_path.lower().endswith(".json"):
      write_json_list(recs, out_path)
    else:
      write_txt_list(recs, out_path)
  return len(idx)


def load_annotations(path, data_root=None, fmt: str = "auto", path_template: str | None = None,
                     flow_template: str | None = None, class_index=None, split: int = 1, subset: str = "train",
                     make_record=None) -> list[VideoRecord]:
  """Reads any supported annotation file.

  Args:
    path: annotation file (or the HMDB-51 splits directory).
    data_root: directory the video paths are relative to.
    fmt: "auto" (``detect_format``) or one of ``FORMATS`` ("csv" is an alias of "kinetics_csv").
    path_template: video path template (format default when None: "{name}" for json / txt / csv, "{name}{ext}" for
      UCF-101, "{class_name}/{name}{ext}" for HMDB-51).
    flow_template: optional flow path template.
    class_index: classInd.txt path / list of class names (UCF-101: required, default ``classInd.txt`` next to the list;
      Kinetics: optional label order; HMDB-51: optional class order).
    split, subset: HMDB-51 split selection.
    make_record: optional ``(name, label, **fields) -> VideoRecord`` used instead of data_root / templates (see
      ``load_annotation_source``).
  """
  return load_annotation_source(path, data_root, fmt, path_template, flow_template, class_index, split,
                                subset, make_record).records


def class_counts(records: Iterable[VideoRecord]) -> dict[int, int]:
  """{0-based label: number of records}, sorted by label."""
  counts: dict[int, int] = {}
  for r in records:
    counts[r.label] = counts.get(r.label, 0) + 1
  return dict(sorted(counts.items()))
