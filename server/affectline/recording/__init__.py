"""Server-side analysis of recorded webcam sessions: decode, detect, align, analyse.

- `decode`: OpenCV/FFmpeg decoding with each frame's own timestamp, and the input checks;
- `blazeface`: the browser's face detector (the same BlazeFace weights, run with onnxruntime);
- `align`: the browser's eye-aligned gray crop, pixel for pixel the geometry of client_js/src/face.ts;
- `analyse`: the pipeline into the batcher (low priority) and the timeline store;
- `bench`: the throughput benchmark.
"""
