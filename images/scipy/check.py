# Run in the built image: the template's frameworks import (build-template.sh's last step).
import sys

import matplotlib as mpl
import numpy as np
import pandas as pd
import scipy
import sklearn

for name, module in (("numpy", np), ("pandas", pd), ("scipy", scipy), ("sklearn", sklearn)):
    sys.stdout.write(f"{name} {module.__version__}\n")
sys.stdout.write(f"matplotlib {mpl.__version__}\n")
