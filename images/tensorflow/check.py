# Run in the built image: the template's frameworks import (build-template.sh's last step).
import sys

import tensorflow as tf

sys.stdout.write(f"tensorflow {tf.__version__} keras {tf.keras.__version__}\n")
