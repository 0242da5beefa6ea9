# Fixture for test_layers: proves the import walk sees a plain `import time`.
import time  # noqa: F401
