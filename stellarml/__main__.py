"""``python -m stellarml``: the ``stellarml`` command, also under ``torchrun``.

Started by ``torchrun`` (``WORLD_SIZE`` > 1), every process joins the process
group first (`stellarml.training.distributed.init_distributed`), so that
``train`` trains data-parallel; only rank 0 writes files and prints::

    torchrun --standalone --nproc_per_node=2 -m stellarml train CONFIG -o model.asdf
"""

import contextlib
import os
import sys


def main(argv=None):
    """Run the command line in this process (joining torchrun's process group, if any)."""
    from .cli import main as cli_main
    from .training.distributed import destroy_distributed, init_distributed, is_main_process

    created = init_distributed()
    try:
        if is_main_process():
            return cli_main(argv)
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            return cli_main(argv)
    finally:
        if created:
            destroy_distributed()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
