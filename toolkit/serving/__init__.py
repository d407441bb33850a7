"""tk serve: a saved run (or its ONNX export) as an HTTP JSON service (docs/deploy.md)."""
