"""The detached process of a local job: `python -m ft.jobs.local_runner JOB_ID`.

It runs the job's training command as a child in its own process group, records RUNNING, waits, and records the exit
code and the final stage. A SIGTERM to this process is forwarded to the training's process group, and
`ft jobs cancel` signals that group itself. Training then finishes its step, writes a checkpoint and exits with 143,
so the job ends CANCELED. A training that does not stop within the grace period is killed. The optional timeout stops
the job the same way and ends it ERROR.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from ft.jobs.store import JobStore

# Exit code of `ft train` stopped by SIGTERM after its checkpoint (128 + SIGTERM, `ft.checkpoints.STOP_EXIT_CODE`,
# not imported because that module loads transformers). A child killed by the signal itself returns -SIGTERM.
STOPPED_EXIT_CODES = (143, -signal.SIGTERM)
STOP_GRACE_S = 45.0  # after SIGTERM, the time allowed to finish the step and write the checkpoint
POLL_S = 0.5


class Runner:
    def __init__(self, store: JobStore, job_id: str):
        self.store = store
        self.job_id = job_id
        self.child: subprocess.Popen | None = None
        self.stop_requested_at: float | None = None
        self.timed_out = False

    def request_stop(self, signum=None, frame=None) -> None:
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
        if self.child is not None and self.child.poll() is None:
            signal_group(self.child.pid, signal.SIGTERM)

    def run(self) -> int:
        record = self.store.get(self.job_id)
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_stop)
        if record.cancel_requested or self.stop_requested_at is not None:
            return self.finish("CANCELED", None, "canceled before it started")

        command, cwd = record.spec["command"], record.spec.get("cwd")
        print(f"ft job {self.job_id}: running {' '.join(command)}", flush=True)
        self.child = subprocess.Popen(command, cwd=cwd, start_new_session=True, stdin=subprocess.DEVNULL)
        self.store.update(self.job_id, stage="RUNNING", pid=os.getpid(), child_pgid=self.child.pid,
                          started_at=time.time())
        if self.stop_requested_at is not None:  # a SIGTERM that came while the child was starting
            self.request_stop()
        deadline = time.monotonic() + record.timeout_s if record.timeout_s else None
        while self.child.poll() is None:
            self.watch(deadline)
            time.sleep(POLL_S)
        return self.record_exit(self.child.returncode)

    def watch(self, deadline: float | None) -> None:
        """Forward a cancel request or the timeout to the child, and kill it when the grace period is over."""
        if self.stop_requested_at is None and self.store.get(self.job_id).cancel_requested:
            # `ft jobs cancel` has sent SIGTERM to the training's process group itself. A second SIGTERM would tell
            # the training to stop without its checkpoint, so only the grace period starts here.
            self.stop_requested_at = time.monotonic()
        if self.stop_requested_at is None and deadline is not None and time.monotonic() > deadline:
            self.timed_out = True
            print(f"ft job {self.job_id}: timeout reached; stopping the training", flush=True)
            self.request_stop()
        if self.stop_requested_at is not None and time.monotonic() - self.stop_requested_at > STOP_GRACE_S:
            print(f"ft job {self.job_id}: training still running {STOP_GRACE_S:.0f} s after SIGTERM; killing it",
                  flush=True)
            signal_group(self.child.pid, signal.SIGKILL)

    def record_exit(self, code: int) -> int:
        if self.timed_out:
            return self.finish("ERROR", code, "Job timeout")
        if code == 0:
            return self.finish("COMPLETED", code, None)
        if self.stop_requested_at is not None or code in STOPPED_EXIT_CODES:
            return self.finish("CANCELED", code, "stopped by SIGTERM")
        return self.finish("ERROR", code, f"training exited with code {code}")

    def finish(self, stage: str, code: int | None, message: str | None) -> int:
        detail = f" ({message})" if message else ""
        print(f"ft job {self.job_id}: {stage}, exit code {code}{detail}", flush=True)
        self.store.update(self.job_id, stage=stage, exit_code=code, message=message, finished_at=time.time())
        return 0


def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ft.jobs.local_runner JOB_ID", file=sys.stderr)
        return 2
    runner = Runner(JobStore(), args[0])
    try:
        return runner.run()
    except BaseException as err:
        runner.store.update(args[0], stage="ERROR", message=f"local runner failed: {type(err).__name__}: {err}",
                            finished_at=time.time())
        raise


if __name__ == "__main__":
    sys.exit(main())
