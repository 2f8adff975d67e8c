"""A data-parallel run's process groups are destroyed while Python still runs, not by the interpreter's exit.

fairseq-train never destroys its process groups: torch's registry and fairseq's own global group keep them
until the interpreter tears its modules down. Over gloo each group has worker threads, and the last
collective's work object, which holds the tensors the Python code passed, is released by its worker thread
just after the collective completes. When that release (or any later one) comes after interpreter
finalization has begun, the thread's wait for the GIL ends the thread by unwinding through a destructor,
and the process aborts: "terminate called without an active exception", SIGABRT, at the end of a run that
trained correctly (docs/design.md). Destroying the groups in an exit handler, which runs before
finalization, joins those threads while the GIL can still be taken.
"""
import gc
import sys

import torch.distributed as dist


def release():
    """The exit handler (``__init__`` registers it): every group destroyed, fairseq's reference dropped."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if getattr(sys, "last_value", None) is not None:
        return  # the run failed: a peer may never join, and destroying a group would wait for it
    dist.destroy_process_group()  # every group, out of torch's registry
    from fairseq.distributed import utils

    if hasattr(utils.get_global_group, "_global_group"):
        del utils.get_global_group._global_group  # fairseq's own reference to its global group
    gc.collect()  # a group still named only from a reference cycle
