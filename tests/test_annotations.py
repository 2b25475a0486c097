"""Annotation readers / writers: CtP JSON & txt, Kinetics CSV, classInd, UCF-101, HMDB-51, FedVSSL client splits."""

import collections
import json
import os

import pytest

from input_pipeline import annotations as ann

FIXTURES = "/work/shared/fixtures/fedvssl_k400_splits"
needs_fixtures = pytest.mark.skipif(not os.path.isdir(FIXTURES), reason="shared FedVSSL split fixtures not present")


def write(path, text):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  return path


def test_json_list_labels_are_one_based(tmp_path):
  p = write(tmp_path / "train.json", json.dumps([
      {"name": "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", "label": 1},
      {"name": "YoYo/v_YoYo_g01_c01", "label": 101},
      {"name": "unlabeled/x"},
  ]))
  recs = ann.read_json_list(p, "/data/ucf101", "zips/{name}.zip")
  assert recs[0] == ann.VideoRecord("/data/ucf101/zips/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.zip", 0,
                                    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01")
  assert recs[1].label == 100 and recs[2].label == -1
  # template fields and flow paths
  recs = ann.read_json_list(p, "/d", "{dirname}/{stem}.mp4", flow_template="flow/{name}.zip")
  assert recs[1].path == "/d/YoYo/v_YoYo_g01_c01.mp4" and recs[1].flow_path == "/d/flow/YoYo/v_YoYo_g01_c01.zip"


def test_json_round_trip(tmp_path):
  recs = [ann.VideoRecord("p/a", 0, "a"), ann.VideoRecord("p/b", 6, "b"), ann.VideoRecord("p/c", -1, "c")]
  out = tmp_path / "out.json"
  ann.write_json_list(recs, out)
  assert json.loads(out.read_text()) == [{"name": "a", "label": 1}, {"name": "b", "label": 7}, {"name": "c"}]
  back = ann.read_json_list(out, "p")
  assert [(r.name, r.label, r.path) for r in back] == [("a", 0, "p/a"), ("b", 6, "p/b"), ("c", -1, "p/c")]
  ann.write_json_list([{"name": "x", "label": 3}], out)  # dicts are file-format already (1-based)
  assert ann.read_json_list(out)[0].label == 2


@pytest.mark.parametrize("content,match", [
    ("{not json", r"bad\.json:1: invalid JSON"),
    ('{"name": "a"}', "expected a JSON list"),
    ('[{"label": 1}]', r"entry #0.*name"),
    ('[{"name": "a", "label": 1}, {"name": "b", "label": 0}]', r"entry #1 \(b\).*1-based"),
    ('[{"name": "a", "label": "3"}]', r"entry #0 \(a\).*must be an int"),
])
def test_json_errors(tmp_path, content, match):
  p = write(tmp_path / "bad.json", content)
  with pytest.raises(ann.AnnotationError, match=match):
    ann.read_json_list(p)


def test_txt_list(tmp_path):
  p = write(tmp_path / "train_split1.txt", "brush_hair_x_1 1\n\n# comment\nwave_y_2 51\nsingle\n")
  recs = ann.read_txt_list(p, "/h", "zips/{name}.zip")
  assert [(r.name, r.label) for r in recs] == [("brush_hair_x_1", 0), ("wave_y_2", 50), ("single", -1)]
  assert recs[0].path == "/h/zips/brush_hair_x_1.zip"
  out = tmp_path / "o.txt"
  ann.write_txt_list(recs, out)
  assert out.read_text() == "brush_hair_x_1 1\nwave_y_2 51\nsingle\n"
  bad = write(tmp_path / "bad.txt", "ok 1\nbroken x\n")
  with pytest.raises(ann.AnnotationError, match=r"bad\.txt:2"):
    ann.read_txt_list(bad)
  zero = write(tmp_path / "zero.txt", "a 0\n")
  with pytest.raises(ann.AnnotationError, match=r"zero\.txt:1.*1-based"):
    ann.read_txt_list(zero)


def test_class_index(tmp_path):
  p = write(tmp_path / "classInd.txt", "2 Archery\n1 ApplyEyeMakeup\n3 Basketball Dunk\n")
  assert ann.read_class_index(p) == ["ApplyEyeMakeup", "Archery", "Basketball Dunk"]
  with pytest.raises(ann.AnnotationError, match=r"gap\.txt.*without gaps"):
    ann.read_class_index(write(tmp_path / "gap.txt", "1 a\n3 b\n"))
  with pytest.raises(ann.AnnotationError, match=r"dup\.txt:2.*twice"):
    ann.read_class_index(write(tmp_path / "dup.txt", "1 a\n1 b\n"))
  with pytest.raises(ann.AnnotationError, match=r"bad\.txt:1"):
    ann.read_class_index(write(tmp_path / "bad.txt", "Archery\n"))


def test_kinetics_csv(tmp_path):
  p = write(tmp_path / "train.csv",
            "label,youtube_id,time_start,time_end,split,is_cc\n"
            "taking a shower,Wf9RFoSFJWc,9,19,train,0\n"
            "\"shooting goal (soccer)\",VRizwdWt_WU,97,107,train,0\n"
            "abseiling,abc,0,10,train,0\n")
  recs = ann.read_kinetics_csv(p, "/k400", "{name}/RGB_frames.zip")
  assert recs[0].name == "taking_a_shower/Wf9RFoSFJWc_000009_000019"
  assert recs[0].path == "/k400/taking_a_shower/Wf9RFoSFJWc_000009_000019/RGB_frames.zip"
  assert recs[1].name == "shooting_goal_(soccer)/VRizwdWt_WU_000097_000107"
  # default class order: sorted official label strings
  assert [r.label for r in recs] == [2, 1, 0]
  ci = write(tmp_path / "classInd.txt", "1 taking_a_shower\n2 abseiling\n3 shooting_goal_(soccer)\n")
  assert [r.label for r in ann.read_kinetics_csv(p, class_index=ci)] == [0, 2, 1]
  with pytest.raises(ann.AnnotationError, match=r"train\.csv:3.*not in the class index"):
    ann.read_kinetics_csv(p, class_index=["taking a shower", "abseiling"])
  bad = write(tmp_path / "bad.csv", "label,youtube_id,time_start,time_end,split\nx,y,zz,10,train\n")
  with pytest.raises(ann.AnnotationError, match=r"bad\.csv:2.*time"):
    ann.read_kinetics_csv(bad)
  with pytest.raises(ann.AnnotationError, match=r"hdr\.csv:1.*header"):
    ann.read_kinetics_csv(write(tmp_path / "hdr.csv", "a,b\n1,2\n"))


def test_ucf101_split(tmp_path):
  ci = write(tmp_path / "classInd.txt", "1 ApplyEyeMakeup\n2 ApplyLipstick\n3 YoYo\n")
  train = write(tmp_path / "trainlist01.txt",
                "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nYoYo/v_YoYo_g25_c05.avi 3\n")
  test = write(tmp_path / "testlist01.txt", "ApplyLipstick/v_ApplyLipstick_g01_c01.avi\n")
  recs = ann.read_ucf101_split(train, ci, "/ucf/UCF-101")
  assert recs[0] == ann.VideoRecord("/ucf/UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0,
                                    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01")
  assert recs[1].label == 2
  t = ann.read_ucf101_split(test, ci, "/ucf", "zips/{name}.zip")
  assert t[0].label == 1 and t[0].path == "/ucf/zips/ApplyLipstick/v_ApplyLipstick_g01_c01.zip"
  # dispatch finds classInd.txt next to the list
  assert ann.load_annotations(test, "/ucf")[0].label == 1
  wrong = write(tmp_path / "trainlist02.txt", "YoYo/v_YoYo_g25_c05.avi 1\n")
  with pytest.raises(ann.AnnotationError, match=r"trainlist02\.txt:1.*disagrees"):
    ann.read_ucf101_split(wrong, ci)
  unknown = write(tmp_path / "testlist02.txt", "Nope/v_Nope_g01_c01.avi\n")
  with pytest.raises(ann.AnnotationError, match=r"testlist02\.txt:1.*Nope"):
    ann.read_ucf101_split(unknown, ci)


def test_hmdb51_split(tmp_path):
  d = tmp_path / "splits"
  write(d / "wave_test_split1.txt", "w1.avi 1\nw2.avi 2\nw3.avi 0\n")
  write(d / "brush_hair_test_split1.txt", "b1.avi 2 \nb2.avi 1\n")
  write(d / "brush_hair_test_split2.txt", "b1.avi 1\nb2.avi 2\n")
  write(d / "wave_test_split2.txt", "w1.avi 2\nw2.avi 1\nw3.avi 1\n")
  assert ann.hmdb51_class_names(d) == ["brush_hair", "wave"]  # pinned: sorted, not os.listdir order
  train = ann.read_hmdb51_split(d, 1, "train", "/hmdb")
  assert [(r.name, r.label, r.path) for r in train] == [("b2", 0, "/hmdb/brush_hair/b2.avi"),
                                                        ("w1", 1, "/hmdb/wave/w1.avi")]
  test = ann.read_hmdb51_split(d, 1, "test", "/hmdb", "zips/{name}.zip")
  assert [(r.name, r.label) for r in test] == [("b1", 0), ("w2", 1)] and test[0].path == "/hmdb/zips/b1.zip"
  assert [r.name for r in ann.read_hmdb51_split(d, 2, "train")] == ["b1", "w2", "w3"]
  assert [r.label for r in ann.read_hmdb51_split(d, 1, "train", class_names=["wave", "brush_hair"])] == [0, 1]
  assert len(ann.load_annotations(d, subset="test")) == 2  # a directory dispatches to hmdb51
  write(d / "wave_test_split3.txt", "w1.avi 7\n")
  write(d / "brush_hair_test_split3.txt", "")
  with pytest.raises(ann.AnnotationError, match=r"wave_test_split3\.txt:1"):
    ann.read_hmdb51_split(d, 3)


def test_load_annotations_dispatch_and_subset_writer(tmp_path):
  j = write(tmp_path / "a.json", json.dumps([{"name": "a/1", "label": 2, "extra": 5}, {"name": "a/2", "label": 1}]))
  t = write(tmp_path / "a.txt", "x 1\ny 2\n")
  c = write(tmp_path / "a.csv", "label,youtube_id,time_start,time_end,split\nb c,id1,1,11,train\nd,id2,2,12,train\n")
  assert ann.detect_format(j) == "json" and ann.detect_format(t) == "txt" and ann.detect_format(c) == "kinetics_csv"
  assert ann.detect_format(tmp_path / "trainlist03.txt") == "ucf101"
  for path, n in ((j, 2), (t, 2), (c, 2)):
    src = ann.load_annotation_source(path, "/root")
    assert len(src.records) == n
    out = tmp_path / ("clean_" + path.name)
    assert ann.write_annotation_subset(src, [False, True], out) == 1
    again = ann.load_annotation_source(out, "/root")
    assert again.fmt == src.fmt and [r.path for r in again.records] == [src.records[1].path]
    if src.fmt != "kinetics_csv":  # CSV labels index the classes present in the file (sorted by default)
      assert again.records == [src.records[1]]
  # raw JSON entries (extra keys) survive
  src = ann.load_annotation_source(j)
  ann.write_annotation_subset(src, [True, False], tmp_path / "keep.json")
  assert json.loads((tmp_path / "keep.json").read_text()) == [{"name": "a/1", "label": 2, "extra": 5}]
  with pytest.raises(ValueError, match="unknown annotation format"):
    ann.load_annotations(j, fmt="yaml")
  with pytest.raises(ann.AnnotationError, match="unknown or bad field"):
    ann.load_annotations(j, path_template="{nope}.mp4")
  with pytest.raises(ann.AnnotationError, match="not found"):
    ann.load_annotations(tmp_path / "missing.json")


@needs_fixtures
def test_fedvssl_noniid_client_files():
  classes = ann.read_class_index(f"{FIXTURES}/classInd.txt")
  assert len(classes) == 400
  clients = {k: ann.read_json_list(f"{FIXTURES}/noniid/client_dist{k}.json", "/k400", "{name}/RGB_frames.zip")
             for k in (1, 2, 51)}
  c1 = clients[1]
  assert len(c1) == 2291  # fedvssl.md: client 1 has 2291 videos
  assert c1[0].name == "taking_a_shower/Wf9RFoSFJWc_000009_000019" and c1[0].label == 41
  assert c1[0].path == "/k400/taking_a_shower/Wf9RFoSFJWc_000009_000019/RGB_frames.zip"
  for recs in clients.values():
    # labels follow classInd (the class directory of every name is its class)
    assert all(r.name.split("/")[0] == classes[r.label] for r in recs)
  label_sets = {k: set(r.label for r in v) for k, v in clients.items()}
  assert all(len(s) == 8 for s in label_sets.values())
  assert label_sets[1] == label_sets[51]  # client k and k + 50 hold the halves of the same 8 classes
  assert len(label_sets[1] & label_sets[2]) == 6  # sliding window of stride 1
  names1, names51 = {r.name for r in c1}, {r.name for r in clients[51]}
  assert not names1 & names51  # halves are disjoint
  counts1 = collections.Counter(r.label for r in c1)
  counts51 = collections.Counter(r.label for r in clients[51])
  for label in counts1:  # first half = n // 2, second half = the rest
    assert counts51[label] - counts1[label] in (0, 1)
  small = sorted(counts1.values())[:4]
  large = sorted(counts1.values())[4:]
  assert max(small) < 120 and min(large) > 450  # ~100 clips per small class, ~472 per large class


@needs_fixtures
def test_fedvssl_iid_client_file():
  recs = ann.load_annotations(f"{FIXTURES}/iid/client_dist1.json", "/k400")
  assert len(recs) == 2196
  assert 381 <= len({r.label for r in recs}) <= 398
  assert len({r.name for r in recs}) == len(recs)
