"""procurement.providers.child_process: a child started from a short-lived thread outlives that
thread (PR_SET_PDEATHSIG follows the forking thread, so children are forked from one
process-lifetime thread), and still dies with its parent process."""
import subprocess
import sys
import threading
import time

from procurement.providers import child_process


def _sleeper():
    return child_process.popen([sys.executable, "-c", "import time; time.sleep(60)"],
                               preexec_fn=child_process.die_with_parent)


def test_a_child_started_from_a_thread_that_ends_stays_alive():
    out = []
    t = threading.Thread(target=lambda: out.append(_sleeper()))
    t.start()
    t.join()
    proc = out[0]
    try:
        time.sleep(0.5)  # a PDEATHSIG tied to the ended thread would have killed it by now
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_a_child_dies_with_its_parent_process():
    # A parent that starts a child through child_process, prints its pid, and is killed.
    code = ("import sys, time; from procurement.providers import child_process as c; "
            "p = c.popen([sys.executable, '-c', 'import time; time.sleep(60)'], preexec_fn=c.die_with_parent); "
            "print(p.pid, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child_pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"child {child_pid} outlived its parent")
