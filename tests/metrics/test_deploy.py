"""The monitoring profile fits the code: Prometheus scrapes the ports the compose services
serve /metrics on, the Grafana dashboard asks only for metrics the stages export, through the
provisioned data source, and docker-compose.yml validates with every profile."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ingest.metrics import IngestMetrics
from sink.metrics import SinkMetrics
from tagger.worker.metrics import TaggerMetrics
from tests.metrics.scrape import Scrape

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _exported_names() -> set[str]:
    """Every sample name the three stages export (with a labelled series of each)."""
    tagger = TaggerMetrics("m", "v", problem=lambda: None, lag=lambda: {("t", 0): 1})
    tagger.batch_done(2, 1, ["invalid Tweet: x"], 0.1, 0.05)
    tagger.send_retries.inc()
    sink = SinkMetrics(problem=lambda: None)
    sink.lag_board.set({("t", 0): 1})
    sink.tweets_out.labels("m", "v").inc()
    sink.stored.labels("inserted").inc()
    sink.dead_lettered(["invalid TaggedTweet: x"])
    sink.write_failures.inc()
    sink.batch_latency.observe(0.1)
    ingest = IngestMetrics(problem=lambda: None)
    ingest.dead_lettered(["invalid JSON: x"])
    ingest.tweets_out.inc()
    names: set[str] = set()
    for metrics in (tagger, sink, ingest):
        names |= {s.name for s in Scrape(metrics.render().decode()).samples}
    return names


def test_prometheus_scrapes_the_port_each_service_serves_metrics_on():
    services = _compose()["services"]
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"tagger", "sink", "ingest"}
    for sd in jobs["tagger"]["dns_sd_configs"]:
        for name in sd["names"]:
            assert str(sd["port"]) == services[name]["environment"]["TAGGER_WEB_PORT"]
    for job, variable in (("sink", "SINK_HTTP_PORT"), ("ingest", "INGEST_HTTP_PORT")):
        [target] = [t for c in jobs[job]["static_configs"] for t in c["targets"]]
        host, port = target.split(":")
        assert services[host]["environment"][variable] == port
        assert services[host]["environment"][variable.replace("PORT", "HOST")] == "0.0.0.0"
    mounted = services["prometheus"]["volumes"][0].split(":")[0]
    assert (ROOT / mounted).resolve() == (DEPLOY / "prometheus/prometheus.yml").resolve()


def test_the_dashboard_asks_only_for_exported_metrics_through_the_provisioned_source():
    dashboard = json.loads((DEPLOY / "grafana/dashboards/tweetner.json").read_text())
    [source] = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    exported = _exported_names()
    asked = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"]
        for target in panel["targets"]:
            asked |= set(re.findall(r"tweetner_[a-z_]+", target["expr"]))
    assert asked and asked <= exported, sorted(asked - exported)
    # Every stage's health, flow, lag and latency are on it.
    for stage in ("ingest", "tagger", "sink"):
        assert f"tweetner_{stage}_healthy" in asked
        assert f"tweetner_{stage}_batch_latency_seconds_bucket" in asked


def test_compose_file_is_valid_with_every_profile():
    if not (shutil.which("docker-compose") or subprocess.run(
            ["docker", "compose", "version"], capture_output=True).returncode == 0
            if shutil.which("docker") else False):
        pytest.skip("neither `docker compose` nor docker-compose is installed "
                    "(apt-get install docker-compose)")
    proc = subprocess.run(["make", "-s", "compose-check"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
