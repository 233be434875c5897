"""ok/FAIL lines and a failure count, shared by the deployment checkers."""

failures = 0


def ok(msg):
    print(f"ok: {msg}")


def fail(msg):
    global failures
    failures += 1
    print(f"FAIL: {msg}")


def check(cond, msg):
    (ok if cond else fail)(msg)
    return cond
