"""The input pipeline: video decoding, annotation formats, synthetic data, client partitions and grain datasets.

Part A (this file's exports): ``video`` (frame-exact decoding of containers and CtP frame zips), ``annotations``
(CtP / FedVSSL JSON, txt, Kinetics CSV, UCF-101 and HMDB-51 splits), ``synthetic`` (motion-defined synthetic videos),
``partition`` (FedVSSL client splits) and ``verify`` (dataset scanning). Samplers, transforms and the grain pipeline
live in ``samplers``, ``transforms`` and ``pipeline``.
"""

from input_pipeline.annotations import AnnotationError
from input_pipeline.annotations import VideoRecord
from input_pipeline.annotations import load_annotations
from input_pipeline.annotations import read_class_index
from input_pipeline.annotations import read_hmdb51_split
from input_pipeline.annotations import read_json_list
from input_pipeline.annotations import read_kinetics_csv
from input_pipeline.annotations import read_txt_list
from input_pipeline.annotations import read_ucf101_split
from input_pipeline.annotations import write_json_list
from input_pipeline.video import VideoDecodeError
from input_pipeline.video import decode_frames
from input_pipeline.video import video_num_frames
from input_pipeline.video import write_frame_zip
from input_pipeline.video import write_video

__all__ = [
    "AnnotationError",
    "VideoDecodeError",
    "VideoRecord",
    "decode_frames",
    "load_annotations",
    "read_class_index",
    "read_hmdb51_split",
    "read_json_list",
    "read_kinetics_csv",
    "read_txt_list",
    "read_ucf101_split",
    "video_num_frames",
    "write_frame_zip",
    "write_json_list",
    "write_video",
]
