"""A deployable model: one ONNX file from the image to detections / label maps.

- :mod:`.graph`: the end-to-end modules (preprocessing, model, box decoding, NMS);
- :mod:`.export`: :func:`export_onnx` (``tools/export_onnx.py``);
- :mod:`.infer`: :class:`OnnxModel`, onnxruntime on an image, and drawing.

Needs the ``deploy`` extra (onnx, onnxruntime, onnxscript); importing this package does
not import them.
"""

from .export import export_onnx
from .infer import OnnxModel, paste_masks

__all__ = ['export_onnx', 'OnnxModel', 'paste_masks']
