"""One bounded queue of jobs, served in order by one worker thread that owns the model.

Every generation, training run and model switch is a `Job`: a function of a `JobContext`
run on the worker. HTTP handlers and UI callbacks only submit jobs and wait on their
futures, so listings, `/progress` and `/docs` never wait on the worker. A full queue
raises `QueueFull` at once (the API answers 503 with Retry-After). `interrupt()` and
`skip()` reach the running job through its `Control` between two steps.

Jobs that say they may run `together` (txt2img requests sharing what one UNet batch
shares) are gathered by the worker when it starts one of them: the waiting jobs with the
same key join it, in queue order, up to the bounds the first one names, and the
`run_together` function given to `Jobs` runs them as one batch, each job answered with
its own result. Off (max_together 1) unless asked for.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import HypernetError
from ..generation import Control


class QueueFull(HypernetError):
    """The queue holds as many waiting jobs as it may; try again later."""

    def __init__(self, size: int, retry_after_seconds: int):
        super().__init__(f"the job queue is full ({size} jobs waiting); try again in about {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


class JobCancelled(HypernetError):
    """The job was taken out of the queue before it started."""


class ServerStopping(HypernetError):
    """The server is shutting down and takes no new jobs."""


@dataclass
class ProgressState:
    """What the running job reports; read by other threads through `Jobs.snapshot()`."""

    job: str = ""
    job_id: str = ""
    job_ids: tuple = ()  # every job the running batch answers (several with --batch-requests)
    job_timestamp: str = "0"
    job_no: int = 0  # finished units (batches, or optimizer steps)
    job_count: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0
    started: float = 0.0
    textinfo: str | None = None
    latents: Any = None  # the newest latents, for the live preview
    preview: Any = None  # a ready preview image (training previews)
    losses: list = field(default_factory=list)  # (step, loss) while training
    interrupted: bool = False
    skipped: bool = False

    def runs(self, job_id: str) -> bool:
        """Whether `job_id` is running now (alone, or sharing a batch)."""
        return job_id == self.job_id or job_id in self.job_ids

    @property
    def progress(self) -> float:
        if not self.job_count:
            return 0.0
        partial = self.sampling_step / self.sampling_steps if self.sampling_steps else 0.0
        return min(1.0, (self.job_no + partial) / self.job_count)


@dataclass
class JobContext:
    """Handed to a running job: its control (interrupt/skip) and its progress to fill."""

    control: Control
    state: ProgressState
    lock: threading.Lock

    def update(self, **values) -> None:
        with self.lock:
            for key, value in values.items():
                setattr(self.state, key, value)

    @property
    def interrupted(self) -> bool:
        return self.control.interrupted


@dataclass
class Together:
    """What a job that may share a batch says about itself: jobs with equal `key` may run
    as one; at most `max_images` images in all (the sum of `images`); `payload` is for
    the `run_together` function."""

    key: Any
    images: int
    max_images: int
    payload: Any = None


@dataclass(eq=False)
class Job:
    kind: str
    run: Callable[[JobContext], Any]
    id: str
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    control: Control = field(default_factory=Control)
    submitted: float = field(default_factory=time.monotonic)
    interrupt_when_abandoned: bool = True
    queued: bool = False  # holds a place in the queue (until it starts or is cancelled)
    together: Together | None = None

    def abandon(self) -> None:
        """The client went away: a waiting job is dropped, a running one interrupted
        (unless it is one whose result outlives the client, such as a training run)."""
        if self.future.cancel():
            return
        if self.interrupt_when_abandoned and not self.future.done():
            self.control.interrupted = True


class Jobs:
    """The queue and its worker. `start()` once; `stop()` interrupts the running job,
    cancels the waiting ones and joins the worker."""

    def __init__(self, max_waiting: int = 16, typical_job_seconds: float = 5.0, max_together: int = 1,
                 run_together: Callable[[list[Job], JobContext], list] | None = None):
        if max_waiting < 1:
            raise HypernetError(f"queue size must be at least 1 (got {max_waiting})")
        if max_together < 1:
            raise HypernetError(f"requests run together must be at least 1 (got {max_together})")
        self.max_waiting = max_waiting
        self.max_together = max_together if run_together is not None else 1
        self._run_together = run_together
        self.groups_run = 0  # jobs run as one batch with others, counted once per batch
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._waiting = 0
        self._lock = threading.Lock()
        self._state = ProgressState()
        self._current: Job | None = None
        self._ids = itertools.count(1)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._durations: collections.deque[float] = collections.deque([typical_job_seconds], maxlen=20)
        self.completed = 0

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="hypernet-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout_seconds: float = 60.0) -> None:
        self.close()
        if self._thread is not None:
            self._thread.join(timeout_seconds)

    def close(self) -> None:
        """Take no new jobs, interrupt the running one (a training run saves first) and
        fail the waiting ones; returns at once."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            current = self._current
        if current is not None:
            current.control.interrupted = True
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(ServerStopping("the server is shutting down"))
        self._queue.put(None)

    # -- submitting ----------------------------------------------------------------------
    def submit(self, kind: str, run: Callable[[JobContext], Any], *, interrupt_when_abandoned: bool = True,
               together: Together | None = None) -> Job:
        with self._lock:
            if self._stopping:
                raise ServerStopping("the server is shutting down and takes no new jobs")
            if self._waiting >= self.max_waiting:
                raise QueueFull(self._waiting, self.retry_after_seconds())
            self._waiting += 1
            job = Job(kind, run, id=f"task({next(self._ids)})", interrupt_when_abandoned=interrupt_when_abandoned,
                      queued=True, together=together)
        # a job cancelled while waiting (its client left) gives its place back at once,
        # not when the worker reaches it
        job.future.add_done_callback(lambda future: future.cancelled() and self._leave_queue(job))
        self._queue.put(job)
        return job

    def _leave_queue(self, job: Job) -> None:
        with self._lock:
            if job.queued:
                job.queued = False
                self._waiting -= 1

    def retry_after_seconds(self) -> int:
        average = sum(self._durations) / len(self._durations)
        return max(1, int(round(average * max(1, self._waiting) / 2)))

    # -- steering the running job ---------------------------------------------------------
    def interrupt(self) -> bool:
        return self._steer("interrupted")

    def skip(self) -> bool:
        return self._steer("skipped")

    def _steer(self, flag: str) -> bool:
        """Set `flag` on the running job's control and progress; False when idle."""
        with self._lock:
            job = self._current
            if job is None:
                return False
            setattr(job.control, flag, True)
            setattr(self._state, flag, True)
        return True

    # -- reading ------------------------------------------------------------------------
    def snapshot(self) -> ProgressState:
        """A copy of the progress state, safe to read without the lock."""
        with self._lock:
            state = ProgressState(**self._state.__dict__)
            state.losses = list(self._state.losses)
        return state

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def busy(self) -> bool:
        return self._current is not None

    # -- the worker ------------------------------------------------------------------------
    def _companions(self, job: Job) -> list[Job]:
        """Waiting jobs that may join `job`'s batch, taken out of the queue (queue order)."""
        if self.max_together < 2 or job.together is None:
            return []
        found, images = [], job.together.images
        with self._queue.mutex:  # queue.Queue's own lock over its deque
            for other in list(self._queue.queue):
                if len(found) + 1 >= self.max_together:
                    break
                if (other is None or other.together is None or other.kind != job.kind
                        or other.together.key != job.together.key or other.future.cancelled()
                        or images + other.together.images > job.together.max_images):
                    continue
                self._queue.queue.remove(other)
                found.append(other)
                images += other.together.images
        joined = []
        for other in found:
            self._leave_queue(other)
            if other.future.set_running_or_notify_cancel():
                joined.append(other)
        return joined

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            self._leave_queue(job)
            if not job.future.set_running_or_notify_cancel():
                continue  # cancelled while waiting
            group = [job, *self._companions(job)]
            running = job
            if len(group) > 1:  # steered as one: /interrupt stops the batch, a leaving client only its own share
                running = Job(job.kind, job.run, id=job.id)
            with self._lock:
                self._current = running
                self._state = ProgressState(job=job.kind, job_id=job.id, job_ids=tuple(m.id for m in group),
                                            started=time.time(), job_timestamp=time.strftime("%Y%m%d%H%M%S"))
                context = JobContext(running.control, self._state, self._lock)
            started = time.monotonic()
            try:
                if len(group) > 1:
                    self.groups_run += 1
                    outcomes = self._run_together(group, context)
                else:
                    outcomes = [job.run(context)]
            except BaseException as error:  # noqa: BLE001 - the worker must survive any job
                for member in group:
                    member.future.set_exception(error)
            else:
                for member, outcome in zip(group, outcomes):
                    if isinstance(outcome, BaseException):
                        member.future.set_exception(outcome)
                    else:
                        member.future.set_result(outcome)
            finally:
                self._durations.append(time.monotonic() - started)
                with self._lock:
                    self._current = None
                    self._state = ProgressState(job_timestamp=self._state.job_timestamp)
                    self.completed += len(group)
