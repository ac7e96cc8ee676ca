"""The model: its arithmetic and priors (PyMC-free), the PyMC graph, sampling, diagnostics, gate.

numpyro runs one chain per XLA device, and XLA reads this flag when jax is first imported
(ArviZ may import it before any sampler does), so it is set before any module here loads.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
