# Run in the built image: the template's frameworks import (build-template.sh's last step).
import sys

import numpy as np
import torch

total = torch.tensor([1.0, 2.0]).sum().item()
if total != 3.0:  # noqa: PLR2004 - the sum of the two numbers above
    sys.exit(f"torch adds 1 and 2 to {total}")
sys.stdout.write(f"torch {torch.__version__} numpy {np.__version__}\n")
