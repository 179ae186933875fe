"""From weights to pixels: exact tiled upscaling in bounded memory, image planes
of every mode, weights files and the shipped models (pretrained/), ONNX export."""
