"""DDE: Denoised Distribution Estimation for diffusion preference alignment.

The method's math lives in pure functions over tensors (schedule, ddim, credit, timesteps,
losses); model plumbing lives in backends. Timesteps are diffusers training indices, t = 0 least
noisy. The credit formulas are DDE as derived in this project from the paper's published
description (arXiv 2411.14871), all in dde/credit.py.
"""

__version__ = "0.1.0"
