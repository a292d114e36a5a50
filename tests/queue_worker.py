"""A job-queue worker for the queue tests: logs 'start KEY' / 'done KEY' to a file; 'sleep' jobs never end."""
import sys
import time

from nas_kd.studies import JobQueue

url, log, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])


def run(key: str) -> float:
    with open(log, "a") as f:
        f.write(f"start {key}\n")
    time.sleep(3600 if key == "sleep" else hold)
    with open(log, "a") as f:
        f.write(f"done {key}\n")
    return 1.0


JobQueue(url, "test", heartbeat_seconds=1, grace_seconds=2).work(run)
