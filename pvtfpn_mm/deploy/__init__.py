"""A deployable model: one ONNX file from the image to detections / label maps
(docs/deploy.md): :mod:`.graph` the end-to-end modules, :mod:`.export` :func:`export_onnx`
(``tools/export_onnx.py``), :mod:`.infer` :class:`OnnxModel` (onnxruntime, drawing).

Needs the ``deploy`` extra (onnx, onnxruntime, onnxscript); importing this package does
not import them.
"""

from .export import export_onnx
from .infer import OnnxModel, paste_masks

__all__ = ['export_onnx', 'OnnxModel', 'paste_masks']
