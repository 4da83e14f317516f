"""course_lib: the library of the course "Defending neural networks against adversarial examples".

Importing it has no side effects (no download, no device placement, no plotting). A notebook
starts with ``from course_lib import setup; setup()``.
"""

from .config import device, profile, seed_everything, settings, setup

__version__ = "0.1.0"
__all__ = ["device", "profile", "seed_everything", "settings", "setup", "__version__"]
