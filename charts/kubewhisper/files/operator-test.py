# helm test: GET the operator's /healthz through its Service until it answers 200 (and, with leader election, until
# kopf's "leader" probe says this release's operator holds the Lease), or fail after TIMEOUT seconds.
import json
import os
import sys
import time
import urllib.request

url, want_leader = os.environ["HEALTHZ_URL"], os.environ.get("WANT_LEADER") == "1"
deadline = time.monotonic() + float(os.environ.get("TIMEOUT", "60"))
last = "no answer"
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read() or b"{}")
        if not want_leader or body.get("leader") is True:
            print(f"PASS: {url} answered {body}")
            sys.exit(0)
        last = f"answered {body}, not the Lease holder"
    except Exception as e:  # DNS not ready, Service without endpoints yet, a 500: retried until the deadline
        last = repr(e)
    time.sleep(2)
print(f"FAIL: {url}: {last}", file=sys.stderr)
sys.exit(1)
