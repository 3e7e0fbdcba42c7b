"""Scrape a running sluicegate's admin endpoint with the reference parsers: the Prometheus
Python client's text parser for /metrics, and HdrHistogram_py's interval log reader for
/histograms. Waits for /ready, scrapes twice, prints what it found as JSON.

usage: admin_scrape.py BASE_URL TOKEN
"""
import json
import sys
import tempfile
import time
import urllib.error
import urllib.request

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
from prometheus_client.parser import text_string_to_metric_families

base, token = sys.argv[1], sys.argv[2]


def get(path, auth=True):
    req = urllib.request.Request(base + path)
    if auth:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


deadline = time.time() + 60
while True:
    try:
        status, _ = get("/ready")
        if status == 200:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("never ready")
    time.sleep(0.05)


def scrape():
    status, body = get("/metrics")
    assert status == 200, status
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out.setdefault(s.name, []).append([s.labels, s.value])
    return out


first = scrape()
time.sleep(1.0)
second = scrape()

status, log = get("/histograms")
assert status == 200, status
with tempfile.NamedTemporaryFile("w", suffix=".hlog", delete=False) as f:
    f.write(log)
reader = HistogramLogReader(f.name, HdrHistogram(1, 3_600_000_000_000, 3))
counts = {}
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    counts[h.get_tag()] = h.get_total_count()

print(json.dumps({
    "first": first,
    "second": second,
    "histogram_counts": counts,
    "health": get("/health")[0],
    "unauthorized": get("/metrics", auth=False)[0],
    "not_found": get("/nope")[0],
}))
