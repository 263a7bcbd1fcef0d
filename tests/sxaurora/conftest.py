import os
import sys

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)  # ve_networks: the networks these tests run
sys.path.insert(0, os.path.join(HERE, "..", "core"))  # graphs: IR test networks
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))  # zoo: models in plain torch.nn
