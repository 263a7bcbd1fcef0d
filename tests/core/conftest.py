import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # interpreter_device, a plugin written in the tests
