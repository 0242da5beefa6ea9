# Fixture for test_house_rules: proves the import walk sees a plain `import time`.
import time  # noqa: F401
