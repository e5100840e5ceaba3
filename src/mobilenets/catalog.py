"""What the package offers, known without importing torch: the built-in model names and the
smallest input they take.

The command line reads these to build its parser (``--model`` choices, the ``--resolution``
range), so that ``mobilenets COMMAND --help`` starts in a fraction of a second. The registry
(:mod:`mobilenets.models.registry`) is the authority: a test holds this list equal to what the
model families register.
"""

from __future__ import annotations

#: Every variant the model families register, sorted (``list_models()`` after import).
MODEL_NAMES = (
    "deeplabv3_mobilenet_v1",
    "deeplabv3_mobilenet_v2",
    "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v2",
    "lraspp_mobilenet_v3_large",
    "lraspp_mobilenet_v3_small",
    "mobilenet_v1",
    "mobilenet_v1_conv",
    "mobilenet_v1_shallow",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "ssd300_mobilenet_v1",
    "ssdlite_mobilenet_v1",
    "ssdlite_mobilenet_v2",
    "ssdlite_mobilenet_v3_large",
    "ssdlite_mobilenet_v3_small",
)
#: The classifiers among them (the others are segmenters and detectors: ``list_models(task=...)``).
CLASSIFIER_NAMES = tuple(n for n in MODEL_NAMES if n.startswith("mobilenet_"))
#: The smallest input side: five stride-2 stages take 32 px to 1 px.
MIN_INPUT_SIZE = 32
#: Where ``mobilenets convert`` reads weights from (``tf-ssd``: a TF Object Detection API
#: SSDLite-MobileNetV2 frozen graph).
WEIGHT_SOURCES = ("torchvision", "timm", "keras", "tf-ssd")
#: Data specs that name a data set rather than a folder (``photos:large``, ``imagenette:320px``
#: are sizes of one): ``mobilenets.data.parse_spec`` reads them, the output policy skips them.
DATA_SETS = ("digits", "cifar10", "photos", "imagenette", "nuclei", "voc", "cityscapes", "trees")
