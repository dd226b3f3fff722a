"""The ``autoscaler demo``: a fleet of leases on the local sandbox under trace load, watched live, then reported.

* :mod:`autoscaler.demo.scenario` — the leases, the demo policy and the load each lease gets;
* :mod:`autoscaler.demo.runner` — starts sandbox + data plane + controller + load, samples what happens;
* :mod:`autoscaler.demo.live` — the rich live view (or plain lines when not on a terminal);
* :mod:`autoscaler.demo.report` — CSV, PNG per lease, Markdown/HTML summary and the JSON summary.
"""
