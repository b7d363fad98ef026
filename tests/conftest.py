"""Suite-wide settings. Each area keeps its fixtures in its own folder's conftest.py."""
import os

# Nothing may reach a model hub: every model in the tests is local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
