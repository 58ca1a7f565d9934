"""One backend's campaign benchmark (see scripts/bench/campaign): starts the campaign, lets it
run, reads the service's calls, metrics and CPU time, and prints one row."""

import json
import sys
import time
import urllib.request
from datetime import datetime

base, pid, backend, destinations, cps, measure = sys.argv[1:7]
destinations, cps, measure = int(destinations), float(cps), float(measure)
TOKEN = "bench-token"
TICKS = 100  # clock ticks per second (USER_HZ)


def request(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + TOKEN)
    with urllib.request.urlopen(req, timeout=60) as response:
        return json.loads(response.read() or b"null")


def cpu_seconds():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def metrics():
    with urllib.request.urlopen(base + "/metrics") as response:
        return response.read().decode()


def lag_quantiles(text, quantiles):
    """Quantiles of the dispatch lag from its histogram: each is its bucket's upper bound."""
    buckets = []
    for line in text.splitlines():
        if line.startswith("callhook_campaign_dispatch_lag_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    total = buckets[-1][1]
    return [next(le for le, n in buckets if n >= q * total) for q in quantiles]


def instant(raw):
    return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()


# 70% answered (0, 1, 9), 20% busy (2), 10% timeout (3), by the number's last digit.
endings = [0, 1, 9, 0, 1, 9, 0, 2, 2, 3]
numbers = [{"to": f"4477009{n:05d}{endings[n % 10]}"} for n in range(destinations)]
campaign = request("POST", "/v1/campaigns", {
    "agent_id": "bench-agent", "calls_per_second": cps, "max_attempts": 2,
    "redial_on": ["busy", "timeout"], "redial_after_secs": 30, "destinations": numbers,
})
# The first seconds warm up (connections, caches); the window starts after them.
time.sleep(5)
start_cpu, started = cpu_seconds(), time.time()
time.sleep(measure)
cpu, ended = cpu_seconds() - start_cpu, time.time()
text = metrics()
request("POST", f"/v1/campaigns/{campaign['id']}/pause")

calls, cursor = [], None
while True:
    page = request("GET", f"/v1/calls?campaign_id={campaign['id']}&limit=1000"
                   + (f"&cursor={cursor}" if cursor else ""))
    calls += page["items"]
    cursor = page["next_cursor"]
    if not cursor:
        break
sent = sorted(instant(c["created_at"]) for c in calls)
window = [t for t in sent if started <= t < ended]
achieved = (len(window) - 1) / (window[-1] - window[0])
gaps = [b - a for a, b in zip(sent, sent[1:])]
p50, p99 = lag_quantiles(text, [0.5, 0.99])

# The reference: calls placed one by one through the API on the same service, same agent.
time.sleep(2)
reference_calls = 300
reference_cpu = cpu_seconds()
for n in range(reference_calls):
    request("POST", "/v1/calls", {"agent_id": "bench-reference", "to": f"4477008{n:05d}1"})
reference_cpu = cpu_seconds() - reference_cpu

per_attempt = cpu / len(window) * 1000
per_call = reference_cpu / reference_calls * 1000
print(f"{backend:<8} | {cps:<9g} | {achieved:<9.4f} | {(achieved / cps - 1) * 100:+7.2f}% | "
      f"{min(gaps) * 1000:6.1f} ms | {p50 * 1000:g} / {p99 * 1000:g} ms{'':<3} | "
      f"{per_attempt:8.2f} ms | {per_call:8.2f} ms | {per_attempt / per_call:.2f}")
print(f"  {len(window)} attempts in the window, {len(calls)} calls in all "
      f"({sum(1 for c in calls if c['attempt'] > 1)} redials)", file=sys.stderr)
