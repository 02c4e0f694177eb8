# Run in the built image: R and its Jupyter kernel are there (build-template.sh's last step).
import subprocess
import sys

from jupyter_client.kernelspec import KernelSpecManager

specs = KernelSpecManager().find_kernel_specs()
if "ir" not in specs:
    sys.exit(f"no R kernel among {sorted(specs)}")
out = subprocess.run(
    ["/usr/bin/R", "-q", "-e", "library(data.table); library(dplyr); cat(R.version.string)"],
    capture_output=True,
    text=True,
    check=True,
).stdout
sys.stdout.write(f"kernels {sorted(specs)}; {out.strip().splitlines()[-1]}\n")
