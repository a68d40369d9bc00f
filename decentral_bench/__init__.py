"""decentral-bench: decentralized against server-based training on Flower, recorded in MLflow.
May import: its folders, in the order of tests/test_layout.py (strategies is a sibling package)."""
