"""The training DataLoader: seeded shuffling (exact resume) over a dataset of this package, with workers that leave
stop signals to the main process."""

from __future__ import annotations

import functools
import os
import signal
import threading

import torch
from torch.utils.data import DataLoader, Dataset


def _end_on_sigterm_from(parent: int) -> None:
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
            os._exit(0)  # quietly, as torch's own worker handler does when its main process terminates it


def leave_stop_signals_to_the_main_process(worker_id: int, main_pid: int) -> None:
    """worker_init_fn: SIGINT and SIGTERM sent to a whole process group or job (Ctrl-C, ``timeout``, a scheduler's
    preemption) reach the workers too. A worker would die of SIGTERM (the main process's next fetch then fails) or run
    the trainer's handler it inherited, but the main process alone decides to stop: it finishes the step and saves.

    SIGTERM from the main process itself must still end a worker: ``Process.terminate()`` is how the DataLoader and
    multiprocessing's exit handler stop workers that did not end on request, and a worker that ignored it would hang
    the main process at exit. So SIGTERM is blocked and a thread takes each one, ending the worker only when the main
    process sent it (the sender is known from ``sigwaitinfo``; where that is missing, e.g. macOS, only SIGINT is left).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "sigwaitinfo"):
        # Blocked before the thread starts (threads inherit the mask): every SIGTERM waits for sigwaitinfo.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        threading.Thread(target=_end_on_sigterm_from, args=(main_pid,), daemon=True, name="sigterm").start()


def build_loader(dataset: Dataset, config, device_type: str) -> DataLoader:
    d = config.data
    return DataLoader(
        dataset, batch_size=d.batch_size, shuffle=not d.serial_batches, num_workers=d.num_workers,
        pin_memory=device_type == "cuda", persistent_workers=d.num_workers > 0,
        # The pid, not os.getppid() in the worker: with the forkserver start method a worker's parent is the server.
        worker_init_fn=functools.partial(leave_stop_signals_to_the_main_process, main_pid=os.getpid()),
        generator=torch.Generator().manual_seed(config.train.seed),
    )
