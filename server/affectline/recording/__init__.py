"""Server-side analysis of recorded webcam sessions: decode, detect, align, analyse, store.

- `decode`: OpenCV/FFmpeg decoding with each frame's own timestamp, the input checks and errors;
- `blazeface`: the browser's face detector (the same BlazeFace weights, run with onnxruntime);
- `align`: the browser's eye-aligned gray crop, pixel for pixel the geometry of client_js/src/face.ts;
- `analyse`: the pipeline into the batcher (low priority) and the timeline store;
- `job`: one held recording -> one stored session (shared by the CLI and RecordingService);
- `uploads`: recordings arriving over the API, in private temporary files, resumable;
- `jobs`: the server's running analyses, their progress and the concurrency limit.
"""
