"""The training DataLoader: seeded shuffling (exact resume) over a dataset of this package, with workers that leave
stop signals to the main process."""

from __future__ import annotations

import functools
import multiprocessing
import multiprocessing.context
import os
import signal
import threading

import torch
from torch.utils.data import DataLoader, Dataset

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


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

    Blocking here covers only this thread and those it starts later: the mask is per thread, and a group signal goes
    to any thread that does not block it, where torch's worker handler kills the process. Threads that the worker
    started before this function ran are covered by the loader's ``multiprocessing_context``, which starts each
    worker with both signals already blocked.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "sigwaitinfo"):
        # Blocked before the thread starts (threads inherit the mask): every SIGTERM waits for sigwaitinfo.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        threading.Thread(target=_end_on_sigterm_from, args=(main_pid,), daemon=True, name="sigterm").start()


class _BlockStopSignalsAtStart:
    """A worker process born with SIGINT and SIGTERM blocked: a forked child starts with its parent thread's mask
    (kept through exec for spawn), and every thread it ever starts inherits it, so no thread of the worker can take
    a group signal before the init function has set up the one that decides. The main process blocks them only
    while it forks; one that arrives then waits and is handled as usual right after."""

    def start(self):
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _ForkProcess(_BlockStopSignalsAtStart, multiprocessing.context.ForkProcess):
    pass


class _SpawnProcess(_BlockStopSignalsAtStart, multiprocessing.context.SpawnProcess):
    pass


class _ForkContext(multiprocessing.context.ForkContext):
    Process = _ForkProcess


class _SpawnContext(multiprocessing.context.SpawnContext):
    Process = _SpawnProcess


def worker_context() -> multiprocessing.context.BaseContext | None:
    """The default start method's context, with stop signals blocked in each new worker. None (the DataLoader's
    default) for forkserver, whose children inherit the server's mask, not ours, and where ``pthread_sigmask`` is
    missing."""
    if not hasattr(signal, "pthread_sigmask"):
        return None
    return {"fork": _ForkContext, "spawn": _SpawnContext}.get(multiprocessing.get_start_method(), lambda: None)()


def build_loader(dataset: Dataset, config, device_type: str) -> DataLoader:
    d = config.data
    return DataLoader(
        dataset, batch_size=d.batch_size, shuffle=not d.serial_batches, num_workers=d.num_workers,
        pin_memory=device_type == "cuda", persistent_workers=d.num_workers > 0,
        # The pid, not os.getppid() in the worker: with the forkserver start method a worker's parent is the server.
        worker_init_fn=functools.partial(leave_stop_signals_to_the_main_process, main_pid=os.getpid()),
        multiprocessing_context=worker_context() if d.num_workers > 0 else None,
        generator=torch.Generator().manual_seed(config.train.seed),
    )
