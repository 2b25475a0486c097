r"""kNN retrieval (R@k) of a frozen exported backbone on UCF-101 / HMDB-51: the FedVSSL / GOCA retrieval protocol.

  python -m fedvssl_jax.main --config=configs/knn.py --workdir=runs/knn_ucf --config.data.root=/data/ucf101 \
      --config.init.backbone_checkpoint=runs/ctp/export/backbone
  # two-stream GOCA export: the RGB and flow features of each view are averaged (flow videos in videos_flow/)
  python -m fedvssl_jax.main --config=configs/knn.py:dataset=hmdb51 --workdir=runs/knn_hmdb \
      --config.data.root=/data/hmdb51 --config.init.backbone_checkpoint=runs/goca/export/backbone \
      --config.init.flow_backbone_checkpoint=runs/goca/export/flow_backbone
  python scripts/knn_eval.py --checkpoint runs/ctp/export/backbone --dataset ucf101 --data-root /data/ucf101 --out DIR

Source: the retrieval protocol of VCOP (Xu et al. 2019) as CtP and FedVSSL run it (fedvssl.md; GOCA's with 5 clips,
goca.md section 6). R@1/5/10/20/50 in `<workdir>/results.json` (+ knn_recall.png); features in
`<workdir>/features_{train,test}.npz`.
Variants: `demo` (synthetic videos, 8-frame 64 px clips), `dataset=ucf101|hmdb51|json|synthetic`, `split=1|2|3`,
`init=DIR` (= config.init.backbone_checkpoint), `flow=DIR` (= config.init.flow_backbone_checkpoint).
"""

import ml_collections

from fedvssl_jax.config_utils import DEMO_EVAL_VIEWS, eval_config, knn_config, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, dataset="ucf101", split=1, init="", flow="")
  return knn_eval_config(arg.dataset, demo=arg.demo, split=arg.split, init=arg.init, flow_init=arg.flow)


def knn_eval_config(dataset: str = "ucf101", demo: bool = False, split: int = 1, init: str = "",
                    flow_init: str = "") -> ml_collections.ConfigDict:
  """kNN retrieval of a frozen exported backbone (`runner = "knn"`, fedvssl_jax/evaluation/knn.py); also
  scripts/knn_eval.py's config. The data, init and features_dir keys are `config_utils.eval_config`'s."""
  config = eval_config("knn", dataset, demo, split, init, flow_init)
  # Views: 10 uniform 16-frame clips at stride 2 x 3 crops (left / centre / right, 112 px after resizing the short
  # side to 112) per video; each view's pooled feature L2-normalised, views averaged. Retrieval: cosine similarity,
  # the train split is the gallery and the test split the queries. `mean_center=True` subtracts the gallery mean
  # first (CoCLR's protocol); GOCA used `num_clips=5` and `clip_placement="goca"`.
  config.knn = knn_config(batch_size=8)
  config.knn.num_clips = 10
  del config.knn["enabled"]  # the runner always evaluates; the data is config.data
  del config.knn["data"]
  if config.data.source == "synthetic":
    # demo: the synthetic videos' views (2 uniform 8-frame clips, one centre crop of 64 px).
    config.knn.update(DEMO_EVAL_VIEWS, three_crop=False)
  return config
