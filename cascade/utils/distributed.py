"""Running several processes on a machine without CUDA.

``accelerate launch --multi_gpu --num_processes N`` (or ``torchrun``) on a CPU machine starts N processes,
but accelerate 1.15 only joins them into one group (gloo) when told ``cpu=True``; otherwise each process
believes it is alone and does all the work. (``accelerate launch --cpu --num_processes N`` starts one
process.) :func:`processes_on_cpu` says when to pass ``cpu=True``.
"""

import os


def processes_on_cpu() -> bool:
    """True when ``ACCELERATE_USE_CPU`` is set, or this process was launched as one of several
    (``LOCAL_RANK`` / ``WORLD_SIZE`` set) and no CUDA device is visible."""
    import torch
    from accelerate.utils import parse_flag_from_env

    launched = int(os.environ.get("LOCAL_RANK", -1)) != -1 or int(os.environ.get("WORLD_SIZE", 1)) > 1
    return parse_flag_from_env("ACCELERATE_USE_CPU") or (launched and not torch.cuda.is_available())
