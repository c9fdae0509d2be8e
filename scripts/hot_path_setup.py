"""Compiles the modules named on the command line with mypyc, in place (scripts/compile-hot-path).

mypyc's command-line tool puts the runtime its modules share at the top level of the tree. There
only a process started in the repository finds it, not the `drippulse` console script. Naming the
group `processors.hot_path` puts it inside the `processors` package, which imports from anywhere.
"""

import sys

from mypyc.build import mypycify
from setuptools import setup

setup(
    name="drippulse-hot-path",
    ext_modules=mypycify(sys.argv[1:], group_name="processors.hot_path", opt_level="3", debug_level="1"),
    script_args=["build_ext", "--inplace"],
)
