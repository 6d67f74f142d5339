"""RL Zoo hyperparameter files of sb3_satr, installed as the data package ``sb3_satr.zoo_configs``.

The ``__init__.py`` makes the folder a regular package, which setuptools' editable installs
need in order to map a package name onto a folder outside the package tree.
"""
