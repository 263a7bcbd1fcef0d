import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "core"))  # graphs: IR test networks
sys.path.insert(0, os.path.dirname(__file__))  # against_eager: comparing with PyTorch eager
