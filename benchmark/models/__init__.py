"""Model parts that methods and tasks share: image backbones (torchvision, timm, open_clip
towers), the frozen text towers and their embedding cache, and released checkpoints' key
layouts. Below both ``benchmark.methods`` and ``benchmark.tasks``; imports neither."""
