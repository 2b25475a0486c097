r"""kNN retrieval (R@k) of a frozen exported backbone on UCF-101 / HMDB-51: the FedVSSL / GOCA retrieval protocol.

  python -m fedvssl_jax.main --config=configs/knn.py --workdir=runs/knn_ucf --config.data.root=/data/ucf101 \
      --config.init.backbone_checkpoint=runs/ctp/export/backbone
  # two-stream GOCA export: the RGB and flow features of each view are averaged (flow videos in videos_flow/)
  python -m fedvssl_jax.main --config=configs/knn.py:dataset=hmdb51 --workdir=runs/knn_hmdb \
      --config.data.root=/data/hmdb51 --config.init.backbone_checkpoint=runs/goca/export/backbone \
      --config.init.flow_backbone_checkpoint=runs/goca/export/flow_backbone
  python scripts/knn_eval.py --checkpoint runs/ctp/export/backbone --dataset ucf101 --data-root /data/ucf101 --out DIR

Protocol (`fedvssl_jax.config_utils.knn_eval_config`): 10 uniform 16-frame clips at stride 2 x 3 crops (112 px, short
side resized to 112) per video; each view's pooled feature L2-normalised, views averaged; cosine similarity, the train
split is the gallery and the test split the queries; R@1/5/10/20/50 in `<workdir>/results.json` (+ knn_recall.png);
features in `<workdir>/features_{train,test}.npz`. `--config.knn.mean_center=True` subtracts the gallery mean first
(CoCLR); GOCA used `--config.knn.num_clips=5`.
Variants: `demo` (synthetic videos, 8-frame 64 px clips), `dataset=ucf101|hmdb51|json|synthetic`, `split=1|2|3`,
`init=DIR` (= config.init.backbone_checkpoint), `flow=DIR` (= config.init.flow_backbone_checkpoint).
"""

from fedvssl_jax.config_utils import knn_eval_config, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, dataset="ucf101", split=1, init="", flow="")
  return knn_eval_config(arg.dataset, demo=arg.demo, split=arg.split, init=arg.init, flow_init=arg.flow)
