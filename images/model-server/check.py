# Run in the built image (build-local.sh's last step, without network): what predict.py files
# load models with imports, and serve.py compiles and says how it is run.
import subprocess
import sys

import joblib
import numpy as np
import sklearn

for name, module in (("numpy", np), ("scikit-learn", sklearn), ("joblib", joblib)):
    sys.stdout.write(f"{name} {module.__version__}\n")
subprocess.run(
    [sys.executable, "/opt/lattice/serve.py", "--help"], check=True, stdout=subprocess.DEVNULL
)
sys.stdout.write("serve.py runs\n")
