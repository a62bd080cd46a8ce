"""Export: a detector's graph written as ONNX or an OpenVINO IR (f32, bf16, int8 by NNCF), with
onestage's metadata inside, sealed by a SHA-256 of its bytes and checked against its graph when
it is read back."""
