"""Shared pytest fixtures. Each area keeps its fixtures in its own section below."""
import os

# Tests never use a GPU and must not fight over the 2 CPU cores with oversubscribed thread pools.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# ---- foundation (modeling, config, training) ----

# ---- synthetic sky ----

# ---- data (catalogues, imaging, COCO) ----

# ---- evaluation ----
