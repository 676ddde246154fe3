"""pytest under a watchdog: every PERIOD seconds, the main thread's whole stack is appended to FILE.

For a benchmark that may hang (run 27: torch.compile of the triton-backend model sat in inductor
for minutes). faulthandler's dumps stop at 100 frames, which cut off the callers of a deep
recursion; this keeps both ends of the stack (the outer 50 frames and the inner 20). It changes
nothing about what runs: the arguments after FILE go to pytest as they are.

    python benchmarks/stack_watch.py 30 stacks.txt "benchmarks/bench_train_step.py::test_train_step[triton-compile]" --benchmark-only
"""
import sys
import threading
import time
import traceback

import pytest

OUTER, INNER = 50, 20


def watch(period: float, path: str, started: float) -> None:
    main = threading.main_thread()
    while True:
        time.sleep(period)
        frame = sys._current_frames().get(main.ident)
        if frame is None:
            return
        stack = traceback.format_stack(frame)
        if len(stack) > OUTER + INNER:
            stack = stack[:OUTER] + [f"    ... {len(stack) - OUTER - INNER} frames ...\n"] + stack[-INNER:]
        with open(path, "a") as f:
            f.write(f"--- t={time.monotonic() - started:.0f}s depth={len(traceback.extract_stack(frame))}\n")
            f.writelines(stack)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    threading.Thread(target=watch, args=(float(sys.argv[1]), sys.argv[2], time.monotonic()), daemon=True).start()
    sys.exit(pytest.main(sys.argv[3:]))
