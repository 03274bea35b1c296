#!/usr/bin/env python3
"""joulebench's serving client against NVIDIA AIPerf, measured in one run.

Called by bench/serving.sh (which builds the scripted server and AIPerf's
virtualenv); standard library only. Sections:

  llama   a real llama.cpp server (Gemma-3-270M Q4_K_M): one stream at a time
          (our SingleStream, AIPerf --concurrency 1) and two at a time (our
          Offline --max-concurrency 2, AIPerf --concurrency 2); TTFT and TPOT
          against each other and against the server's own per-token time
          (llama.cpp /metrics, read around every run; and joulebench's
          result.json serving.server, read from the streams' `timings`)
  rate    the scripted server (bench/serving/fast_server.rs): Poisson request
          rate stepped up until a client stops sustaining it
  ttft    the scripted server at a fixed Poisson rate: TTFT and TPOT added to
          the configured ones
  streams 1,000 concurrent streams (our Offline --max-concurrency 1000,
          AIPerf --concurrency 1000): added TTFT, client peak RSS and CPU

Every client run is timed and its process tree's RSS polled (10 Hz); the CPU
the rest of the machine used meanwhile ("foreign") is recorded, since this
2-core machine is shared. Raw outputs go under --out; records.jsonl holds one
normalized line per run; table.md the final table.
"""
import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
NCPU = os.cpu_count() or 1


# ---------------------------------------------------------------- processes

def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pid):
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return 0


def cpu_ticks(pid):
    """utime+stime of a live process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        fields = s[s.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])
    except OSError:
        return 0


def tcp_sockets():
    """This machine's TCP sockets as (local, remote, state) hex fields of
    /proc/net/tcp and tcp6."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    yield parts[1], parts[2], parts[3]
        except OSError:
            pass


def client_ports(port):
    """Local ports of this machine's TCP sockets connected to `port`."""
    want = f":{port:04X}"
    return {local for local, remote, _ in tcp_sockets() if remote.endswith(want)}


def machine_busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


class Server:
    """A server process this script started (stopped by its own pid)."""

    def __init__(self, cmd, log, port, health="/health"):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url + health, timeout=2) as r:
                    if r.status == 200:
                        break
            except Exception:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"server did not start: {' '.join(cmd)} (see {log})")
            time.sleep(0.2)

    def cpu(self):
        return cpu_ticks(self.proc.pid)

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return r.read().decode()

    def post(self, path, body=b"{}"):
        req = urllib.request.Request(self.url + path, data=body, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read().decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_quiet(server, limit_s, log):
    """Waits (up to limit_s) until the rest of the machine uses < 0.3 of a core."""
    t0 = time.time()
    while True:
        b0, s0 = machine_busy_ticks(), server.cpu() if server else 0
        time.sleep(1.0)
        b1, s1 = machine_busy_ticks(), server.cpu() if server else 0
        foreign = ((b1 - b0) - (s1 - s0)) / HZ
        if foreign < 0.3 or time.time() - t0 > limit_s:
            waited = time.time() - t0 - 1.0
            if waited > 0.5:
                log(f"    (waited {waited:.0f} s for the machine to quieten; foreign load now {foreign:.2f} cores)")
            return foreign


def run_measured(cmd, out_dir, server, timeout_s, watch_port=None):
    """Runs a client; returns wall, exit status, peak RSS of its process tree
    (10 Hz polling) and of its largest process (wait4), its CPU, and the CPU
    everything else on the machine used meanwhile."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "command.txt").write_text(" ".join(map(str, cmd)) + "\n")
    stdout = open(out_dir / "stdout.txt", "w")
    stderr = open(out_dir / "stderr.txt", "w")
    busy0, srv0 = machine_busy_ticks(), server.cpu() if server else 0
    before = client_ports(watch_port) if watch_port else set()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, start_new_session=True)
    peak_tree = 0
    ports = set()
    rusage = None
    status = None
    try:
        while True:
            pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, rusage = st, ru
                break
            peak_tree = max(peak_tree, sum(rss_bytes(p) for p in tree(proc.pid)))
            if watch_port:
                ports |= client_ports(watch_port)
            if time.monotonic() - t0 > timeout_s:
                os.killpg(proc.pid, signal.SIGKILL)  # the session this run started
                _, status, rusage = os.wait4(proc.pid, 0)
                status = -9
                break
            time.sleep(0.1)
    except BaseException:
        # Interrupted: end the client's session (its own processes only).
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    wall = time.monotonic() - t0
    busy1, srv1 = machine_busy_ticks(), server.cpu() if server else 0
    stdout.close()
    stderr.close()
    client_cpu = rusage.ru_utime + rusage.ru_stime
    server_cpu = (srv1 - srv0) / HZ
    foreign = (busy1 - busy0) / HZ - client_cpu - server_cpu
    rc = os.waitstatus_to_exitcode(status) if status != -9 else -9
    return {
        "rc": rc,
        "wall_s": wall,
        "client_cpu_s": client_cpu,
        "server_cpu_s": server_cpu,
        "foreign_cores": max(foreign, 0.0) / wall if wall > 0 else 0.0,
        "peak_tree_rss_mb": max(peak_tree, rusage.ru_maxrss * 1024) / 2**20,
        "maxrss_mb": rusage.ru_maxrss / 1024,
        "connections": len(ports - before) if watch_port else None,
    }


# ---------------------------------------------------------------- clients

class Bench:
    def __init__(self, a):
        self.a = a
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.records = open(self.out / "records.jsonl", "a")
        self.logf = open(self.out / "bench.log", "a")

    def log(self, msg):
        print(msg, flush=True)
        self.logf.write(msg + "\n")
        self.logf.flush()

    def record(self, rec):
        self.records.write(json.dumps(rec) + "\n")
        self.records.flush()
        return rec

    # joulebench ------------------------------------------------------
    def jb(self, name, server, model, max_tokens, scenario_args, sampling=(), timeout_s=300, watch=False):
        d = self.out / name
        cmd = [self.a.jb, "run", "--workload", "openai", "--endpoint", server.url,
               "--model", model, "--dataset", self.a.prompts, "--max-tokens", str(max_tokens),
               "--ignore-eos", "--power", "none", "-q", "-o", str(d / "run")]
        for s in sampling:
            cmd += ["--sampling", s]
        cmd += scenario_args
        m = run_measured(cmd, d, server, timeout_s, server.port if watch else None)
        m.update(parse_jb(d / "run"))
        m["tool"] = "joulebench"
        return m

    # AIPerf ----------------------------------------------------------
    def aiperf(self, name, server, model, max_tokens, load_args, extra=(), timeout_s=300, watch=False):
        d = self.out / name
        cmd = [self.a.aiperf, "profile", "--model", model, "--url", server.url,
               "--endpoint-type", "chat", "--streaming",
               "--tokenizer", self.a.tokenizer, "--use-server-token-count",
               "--input-file", self.a.prompts, "--custom-dataset-type", "single-turn",
               "--extra-inputs", f"max_tokens:{max_tokens}", "--extra-inputs", "ignore_eos:true",
               "--random-seed", "1", "--ui-type", "none", "--no-server-metrics",
               "--no-gpu-telemetry", "--artifact-dir", str(d / "run")]
        for e in extra:
            cmd += ["--extra-inputs", e]
        cmd += load_args
        m = run_measured(cmd, d, server, timeout_s, server.port if watch else None)
        m.update(parse_aiperf(d / "run"))
        m["tool"] = "AIPerf"
        return m


def parse_jb(d):
    try:
        r = json.loads((d / "result.json").read_text())
    except (OSError, ValueError) as e:
        return {"error": f"no result.json: {e}"}
    s = r.get("serving") or {}
    p = r.get("performance") or {}
    req = s.get("requests", {})
    spread = lambda k, f: (s.get(k) or {}).get(f)
    ftl = (p.get("first_token_latency") or {}).get("percentiles") or []
    lg_ttft_p99 = next((x["latency_ns"] / 1e6 for x in ftl if x["percentile"] == 0.99), None)
    out = {
        "issued": req.get("issued"), "completed": req.get("succeeded"),
        "failed": req.get("failed", 0) + req.get("unfinished", 0),
        "failures": req.get("failures"),
        "resent": req.get("resent"),
        "ttft_mean": spread("ttft_ms", "mean"), "ttft_p50": spread("ttft_ms", "p50"),
        "ttft_p99": spread("ttft_ms", "p99"),
        "tpot_mean": spread("tpot_ms", "mean"), "tpot_p50": spread("tpot_ms", "p50"),
        "tpot_p99": spread("tpot_ms", "p99"),
        "e2e_mean": spread("e2e_ms", "mean"), "e2e_p99": spread("e2e_ms", "p99"),
        "throughput_rps": p.get("throughput_samples_per_s"),
        "output_tok_s": s.get("system_tokens_per_s"),
        "loadgen_ttft_p99": lg_ttft_p99,
        "valid": p.get("valid"),
    }
    if s.get("server"):
        out["server_timings_ms_per_token"] = s["server"].get("ms_per_output_token_mean")
    return out


def parse_aiperf(d):
    try:
        r = json.loads((d / "profile_export_aiperf.json").read_text())
    except (OSError, ValueError) as e:
        return {"error": f"no profile_export_aiperf.json: {e}"}
    g = lambda k, f="avg": (r.get(k) or {}).get(f)
    errors = sum(e.get("count", 0) for e in (r.get("error_summary") or []))
    completed = g("request_count") or 0
    return {
        "issued": (g("completed_request_count") or completed),
        "completed": completed, "failed": max(errors, int(g("error_request_count") or 0)),
        "failures": r.get("error_summary") or None,
        "ttft_mean": g("time_to_first_token"), "ttft_p50": g("time_to_first_token", "p50"),
        "ttft_p99": g("time_to_first_token", "p99"),
        "tpot_mean": g("inter_token_latency"), "tpot_p50": g("inter_token_latency", "p50"),
        "tpot_p99": g("inter_token_latency", "p99"),
        "e2e_mean": g("request_latency"), "e2e_p99": g("request_latency", "p99"),
        "throughput_rps": g("request_throughput"),
        "output_tok_s": g("output_token_throughput"),
        "issue_lag_p99": g("credit_to_start_latency", "p99"),
        "aiperf_version": r.get("aiperf_version"),
    }



def llama_metrics(server):
    """llama.cpp's counters: output tokens and their seconds, prompt tokens
    evaluated and their seconds."""
    vals = {}
    for line in server.get("/metrics").splitlines():
        if line.startswith("llamacpp:"):
            k, v = line.split()
            vals[k.split(":")[1]] = float(v)
    return [vals.get(k, 0.0) for k in ("tokens_predicted_total", "tokens_predicted_seconds_total",
                                         "prompt_tokens_total", "prompt_seconds_total")]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def server_stats(srv):
    try:
        return json.loads(srv.get("/stats"))
    except Exception:
        return None


# A run during which the rest of the machine kept more than this many cores
# busy is repeated once (both are kept in records.jsonl; the table uses the
# one that was not discarded).
FOREIGN_LIMIT = 0.5


def measure(b, q, srv, name, run, fields, kind="fast"):
    """wait for quiet, run, note what the server saw; once more if the
    machine was busy with someone else's work meanwhile."""
    for attempt in (0, 1):
        wait_quiet(srv, q["quiet_wait"], b.log)
        if kind == "fast":
            srv.post("/stats/reset")
            c0 = json.loads(srv.get("/stats"))["connections"]
        else:
            before = llama_metrics(srv)
        m = run(name + ("" if attempt == 0 else "-again"))
        if kind == "fast":
            m["server"] = server_stats(srv)
            m["connections"] = (m["server"] or {}).get("connections", c0) - c0
        else:
            t, ts, p, ps = (y - x for x, y in zip(before, llama_metrics(srv)))
            m["server_ms_per_token"] = ts / t * 1e3 if t > 0 else None
            # Per answered request: a request that died on a connection the
            # server had closed never reached it.
            n = m.get("completed") or 0
            m["server_prompt_s_total"] = ps
            m["server_prompt_ms"] = ps / n * 1e3 if n else None
            m["server_prompt_tokens"] = p / n if n else None
        m.update(fields)
        m["name"] = name
        if m["foreign_cores"] > FOREIGN_LIMIT and attempt == 0:
            m["discarded"] = f"foreign load {m['foreign_cores']:.2f} cores"
            b.record(m)
            b.log(f"  {name}: the machine was busy with other work ({m['foreign_cores']:.2f} cores); once more")
            continue
        return b.record(m)


def tools_order(rep):
    return ("jb", "ai") if rep % 2 == 0 else ("ai", "jb")


def section_llama(b, q):
    a = b.a
    port = free_port()
    srv = Server([a.llama_server, "-m", a.llama_model, "--host", "127.0.0.1", "--port", str(port),
                  "-t", str(a.llama_threads), "-c", "4096", "--parallel", "2", "--metrics"],
                 b.out / "llama-server.log", port)
    try:
        # Warm the model up (the first request pays page faults).
        body = json.dumps({"model": "gemma", "max_tokens": 8,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        req = urllib.request.Request(srv.url + "/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=60).read()
        for rep in range(q["llama_reps"]):
            for load, n, conc in (("c1", q["ss_requests"], 1), ("c2", q["c2_requests"], 2)):
                for tool in tools_order(rep):
                    def run(name):
                        if tool == "jb":
                            scen = (["--scenario", "single-stream"] if conc == 1 else
                                    ["--scenario", "offline", "--max-concurrency", "2",
                                     "--set", "offline_expected_qps=1"])
                            return b.jb(name, srv, "gemma", 64,
                                        scen + ["--duration", "1", "--set", f"min_query_count={n}",
                                                "--set", f"max_query_count={n}"],
                                        ["temperature=0", "cache_prompt=false"], 900, watch=True)
                        return b.aiperf(name, srv, "gemma", 64,
                                        ["--concurrency", str(conc), "--request-count", str(n)],
                                        ["temperature:0", "cache_prompt:false"], 900, watch=True)
                    m = measure(b, q, srv, f"llama/{load}/{tool}-{rep}", run,
                                {"section": "llama", "load": load, "rep": rep}, kind="llama")
                    b.log(f"  {m['name']}: TTFT {fmt(m.get('ttft_mean'))} ms, TPOT {fmt(m.get('tpot_mean'))} ms, "
                          f"server {fmt(m.get('server_ms_per_token'))} ms/token"
                          + (f" (timings: {fmt(m['server_timings_ms_per_token'])})" if m.get("server_timings_ms_per_token") else "")
                          + f", {fmt(m.get('completed'))}/{fmt(m.get('issued'))} ok, {fmt(m.get('connections'))} connections, "
                          f"foreign {m['foreign_cores']:.2f} cores, {m['wall_s']:.0f} s")
    finally:
        srv.stop()


def fast(b, ttft, itl, tokens, tag):
    port = free_port()
    return Server([b.a.fast_server, "--port", str(port), "--ttft-ms", str(ttft), "--itl-ms", str(itl),
                   "--tokens", str(tokens)], b.out / f"fast-server-{tag}.log", port)


RATE_TTFT_LIMIT_MS = 10.0


def sustained(m, rate, ttft_ms):
    ok = (m.get("rc") in (0, 1) and not m.get("error") and (m.get("failed") or 0) == 0
          and m.get("completed") == m.get("issued") and (m.get("completed") or 0) > 0)
    ach = m.get("throughput_rps") or 0
    over = (m.get("ttft_p99") or 1e9) - ttft_ms
    m["ttft_p99_added"] = over
    reasons = []
    if not ok:
        reasons.append("failed or unfinished requests" if m.get("rc") in (0, 1) else f"exit status {m.get('rc')}")
    if ach < 0.9 * rate:
        reasons.append(f"achieved {ach:.0f}/s < 90% of target")
    if over > RATE_TTFT_LIMIT_MS:
        reasons.append(f"p99 added TTFT {over:.1f} ms > {RATE_TTFT_LIMIT_MS:.0f} ms")
    m["sustained"] = not reasons
    m["why_not"] = "; ".join(reasons)
    return m["sustained"]


def time_wait_sockets():
    """TCP sockets in TIME_WAIT (state 06)."""
    return sum(1 for _, _, state in tcp_sockets() if state == "06")


def wait_time_wait(log, limit=1000, most_s=90):
    """After a rate the machine could not keep up with, some 20,000 sockets
    stay in TIME_WAIT for a minute; a step started then fails to connect
    (measured: 11,310 req/s failed right after 16,000, and passed 65 s later)."""
    t0 = time.time()
    while time_wait_sockets() > limit and time.time() - t0 < most_s:
        time.sleep(1)
    if time.time() - t0 > 1:
        log(f"  (waited {time.time() - t0:.0f} s for TIME_WAIT sockets to close: {time_wait_sockets()} left)")


def section_rate(b, q):
    ttft, itl, tokens = 5, 5, 4
    best = {}
    T = q["rate_step_s"]
    for tool in ("jb", "ai"):
        def step(rate):
            # A fresh server for every step: after a rate it could not keep
            # up with, the old one is still draining thousands of connections
            # and would fail the next, lower step for that alone.
            wait_time_wait(b.log)
            srv = fast(b, ttft, itl, tokens, f"rate-{tool}-{rate}")
            def run(name):
                if tool == "jb":
                    return b.jb(name, srv, "fast", tokens,
                                ["--scenario", "server", "--set", f"target_qps={rate}", "--duration", str(T)],
                                timeout_s=max(60, 8 * T))
                return b.aiperf(name, srv, "fast", tokens,
                                ["--request-rate", str(rate), "--arrival-pattern", "poisson",
                                 "--request-count", str(int(rate * T))], timeout_s=max(90, 12 * T))
            try:
                m = measure(b, q, srv, f"rate/{tool}-{rate}", run, {"section": "rate", "rate": rate, "rep": 0})
            finally:
                srv.stop()
            ok = sustained(m, rate, ttft)
            b.record({"section": "rate-verdict", "name": m["name"], "tool": m["tool"], "rate": rate,
                      "sustained": ok, "why_not": m["why_not"]})
            b.log(f"  {m['name']}: achieved {fmt(m.get('throughput_rps'))}/s, {fmt(m.get('completed'))}/{fmt(m.get('issued'))} ok, "
                  f"TTFT p99 +{fmt(m['ttft_p99_added'])} ms, {fmt(m.get('connections'))} connections, "
                  f"client CPU {m['client_cpu_s']:.1f} s, foreign {m['foreign_cores']:.2f} cores -> "
                  + ("sustained" if ok else "NOT sustained: " + m["why_not"]))
            return ok
        best[tool], failed_at = 0, None
        for rate in q["rates"]:
            if step(rate):
                best[tool] = rate
            else:
                failed_at = rate
                break
        # One step between the last rate sustained and the first not.
        if q["refine"] and failed_at and best[tool]:
            mid = int(round((best[tool] * failed_at) ** 0.5, -1))
            if step(mid):
                best[tool] = mid
    b.record({"section": "rate-best", "jb": best.get("jb"), "ai": best.get("ai"), "limit": q["rates"][-1]})


def section_ttft(b, q):
    ttft, itl, tokens, rate, T = 20, 10, 16, q["ttft_rate"], q["ttft_s"]
    srv = fast(b, ttft, itl, tokens, "ttft")
    try:
        for rep in range(q["reps"]):
            for tool in tools_order(rep):
                def run(name):
                    if tool == "jb":
                        return b.jb(name, srv, "fast", tokens,
                                    ["--scenario", "server", "--set", f"target_qps={rate}", "--duration", str(T)])
                    return b.aiperf(name, srv, "fast", tokens,
                                    ["--request-rate", str(rate), "--arrival-pattern", "poisson",
                                     "--request-count", str(int(rate * T))])
                m = measure(b, q, srv, f"ttft/{tool}-{rep}", run,
                            {"section": "ttft", "rep": rep, "ttft_cfg": ttft, "itl_cfg": itl})
                st = (m.get("server") or {}).get("ttft_us") or {}
                b.log(f"  {m['name']}: TTFT p50 {fmt(m.get('ttft_p50'))} p99 {fmt(m.get('ttft_p99'))} ms "
                      f"(server's own p50 {fmt((st.get('p50') or 0) / 1e3)} p99 {fmt((st.get('p99') or 0) / 1e3)}), "
                      f"TPOT {fmt(m.get('tpot_mean'))} ms, {fmt(m.get('completed'))}/{fmt(m.get('issued'))} ok, "
                      f"{fmt(m.get('connections'))} connections, foreign {m['foreign_cores']:.2f} cores")
    finally:
        srv.stop()


def section_streams(b, q):
    """~1,000 open streams two ways: Poisson arrivals at 250/s of 3.95 s
    streams (steady state; connections open gradually), and a closed loop of
    1,000 (every wave starts and ends together: 1,000 connects, then 1,000
    first tokens, at the same instant)."""
    ttft, itl, tokens, conc = 50, 100, 40, 1000
    rate = 250  # × 3.95 s per stream ≈ 1,000 open
    srv = fast(b, ttft, itl, tokens, "streams")
    try:
        for rep in range(q["streams_reps"]):
            for load in ("poisson", "closed"):
                for tool in tools_order(rep):
                    def run(name):
                        if load == "poisson":
                            T = q["streams_poisson_s"]
                            if tool == "jb":
                                return b.jb(name, srv, "fast", tokens,
                                            ["--scenario", "server", "--set", f"target_qps={rate}",
                                             "--duration", str(T)])
                            return b.aiperf(name, srv, "fast", tokens,
                                            ["--request-rate", str(rate), "--arrival-pattern", "poisson",
                                             "--request-count", str(rate * T)], timeout_s=600)
                        n = q["streams_closed_requests"]
                        if tool == "jb":
                            return b.jb(name, srv, "fast", tokens,
                                        ["--scenario", "offline", "--max-concurrency", str(conc),
                                         "--set", "offline_expected_qps=1", "--duration", "1",
                                         "--set", f"min_query_count={n}", "--set", f"max_query_count={n}"])
                        return b.aiperf(name, srv, "fast", tokens,
                                        ["--concurrency", str(conc), "--request-count", str(n)], timeout_s=600)
                    m = measure(b, q, srv, f"streams/{load}/{tool}-{rep}", run,
                                {"section": "streams", "load": load, "rep": rep, "ttft_cfg": ttft, "itl_cfg": itl})
                    st = m.get("server") or {}
                    b.log(f"  {m['name']}: {st.get('open_max')} streams open at most, TTFT p50 {fmt(m.get('ttft_p50'))} "
                          f"p99 {fmt(m.get('ttft_p99'))} ms, TPOT {fmt(m.get('tpot_mean'))} ms, "
                          f"{fmt(m.get('completed'))}/{fmt(m.get('issued'))} ok, {fmt(m.get('connections'))} connections, "
                          f"peak RSS {m['peak_tree_rss_mb']:.0f} MB, CPU {m['client_cpu_s']:.1f} s, "
                          f"foreign {m['foreign_cores']:.2f} cores")
    finally:
        srv.stop()


# ---------------------------------------------------------------- table

def fmt(x, nd=2):
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    if float(x).is_integer() and abs(x) < 1e9:
        return f"{int(x)}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{nd}f}"


def table(out):
    recs = [json.loads(l) for l in (out / "records.jsonl").read_text().splitlines() if l.strip()]
    runs = [r for r in recs if r.get("tool") and not r.get("discarded")]
    rows = []
    reps = {}

    def pick(section, tool, f, load=None):
        group = [r for r in runs
                 if r.get("section") == section and r.get("tool") == tool and (load is None or r.get("load") == load)]
        # Runs during which other work kept the machine busy are left out
        # when the same load has runs without.
        clean = [r for r in group if r.get("foreign_cores", 0) <= FOREIGN_LIMIT]
        xs = [f(r) for r in (clean or group)]
        xs = [x for x in xs if x is not None]
        reps[(section, load)] = max(reps.get((section, load), 0), len(xs))
        return med(xs)

    def key(k):
        return lambda r: r.get(k)

    def row(metric, section, f, load=None, ratio=True, ai=True):
        j = pick(section, "joulebench", f, load)
        a = pick(section, "AIPerf", f, load) if ai else None
        rt = f"{j / a:.2f}×" if (ratio and j is not None and a not in (None, 0)) else "–"
        rows.append((metric, fmt(j), fmt(a) if ai else "n/a", rt))

    def pct(k, ref):
        return lambda r: (r[k] / r[ref] - 1) * 100 if r.get(k) is not None and r.get(ref) else None

    def added(k, base):
        return lambda r: r[k] - r[base] if r.get(k) is not None else None

    def vs_server(k):
        return lambda r: (r[k] - ((r.get("server") or {}).get("ttft_us") or {}).get(k.split("_")[1], 0) / 1e3
                          if r.get(k) is not None and (r.get("server") or {}).get("ttft_us") else None)

    def per100(r):
        return 100 * r["connections"] / r["issued"] if r.get("connections") is not None and r.get("issued") else None

    for load, label in (("c1", "1 stream"), ("c2", "2 streams")):
        if not any(r.get("section") == "llama" and r.get("load") == load for r in runs):
            continue
        P = f"llama.cpp, {label}: "
        row(P + "TTFT mean, ms", "llama", key("ttft_mean"), load)
        row(P + "TTFT p50, ms", "llama", key("ttft_p50"), load)
        row(P + "TTFT p99, ms", "llama", key("ttft_p99"), load)
        row(P + "server's prompt time per request (/metrics), ms", "llama", key("server_prompt_ms"), load)
        row(P + "TTFT mean − server's prompt time, ms", "llama",
            lambda r: r["ttft_mean"] - r["server_prompt_ms"] if r.get("ttft_mean") and r.get("server_prompt_ms") else None, load)
        row(P + "TPOT mean (AIPerf: ITL), ms", "llama", key("tpot_mean"), load)
        row(P + "server's ms/token in the same run (/metrics)", "llama", key("server_ms_per_token"), load)
        row(P + "TPOT vs server /metrics, %", "llama", pct("tpot_mean", "server_ms_per_token"), load, ratio=False)
        row(P + "TPOT vs server `timings` (result.json), % (goal within ±2)", "llama",
            pct("tpot_mean", "server_timings_ms_per_token"), load, ratio=False, ai=False)
        row(P + "failed requests (of " + fmt(pick("llama", "joulebench", key("issued"), load)) + ")",
            "llama", key("failed"), load, ratio=False)
        row(P + "requests resent once on a fresh connection (joulebench)", "llama", key("resent"), load,
            ratio=False, ai=False)
        row(P + "output tokens/s", "llama", key("output_tok_s"), load)
        row(P + "connections opened per 100 requests", "llama", per100, load)
        row(P + "client CPU, s", "llama", key("client_cpu_s"), load)
        row(P + "other work on the machine meanwhile, cores", "llama", key("foreign_cores"), load, ratio=False)

    best = [r for r in recs if r.get("section") == "rate-best"]
    if best:
        bst = best[-1]
        j, a = bst.get("jb"), bst.get("ai")
        jl = f"≥ {j}" if j == bst.get("limit") else fmt(j)
        al = f"≥ {a}" if a == bst.get("limit") else fmt(a)
        ratio = (("≥ " if j == bst.get("limit") else "") + f"{j / a:.1f}×") if j and a else "–"
        rows.append(("scripted server: highest sustained Poisson rate, req/s (goal: ratio ≥ 5)", jl, al, ratio))
        ok_rates = {}
        for r in recs:
            if r.get("section") == "rate-verdict" and r.get("sustained"):
                ok_rates.setdefault(r["rate"], set()).add(r["tool"])
        both = sorted(x for x, t in ok_rates.items() if len(t) == 2)
        if both:
            x = both[-1]
            for metric, f in (
                ("client CPU per request, ms (start-up included)",
                 lambda r: r["client_cpu_s"] / max(r.get("completed") or 1, 1) * 1e3 if r.get("rate") == x else None),
                ("TTFT p99 − configured, ms", lambda r: r["ttft_p99"] - 5 if r.get("rate") == x and r.get("ttft_p99") else None),
                ("connections opened per 100 requests", lambda r: per100(r) if r.get("rate") == x else None),
            ):
                row(f"scripted server at {x} req/s (highest both sustained): {metric}", "rate", f)

    if any(r.get("section") == "ttft" for r in runs):
        rate_note = next((r for r in runs if r.get("section") == "ttft"), {})
        P = "scripted server, Poisson 100 req/s, TTFT 20 ms, ITL 10 ms: "
        row(P + "added TTFT p50 (vs configured), ms", "ttft", added("ttft_p50", "ttft_cfg"))
        row(P + "added TTFT p99 (vs configured), ms", "ttft", added("ttft_p99", "ttft_cfg"))
        row(P + "added TTFT p50 (vs the server's own p50), ms", "ttft", vs_server("ttft_p50"))
        row(P + "added TTFT p99 (vs the server's own p99), ms", "ttft", vs_server("ttft_p99"))
        row(P + "TPOT mean − configured ITL, ms", "ttft", added("tpot_mean", "itl_cfg"))
        row(P + "connections opened per 100 requests", "ttft", per100)
        row(P + "client peak RSS, MB", "ttft", key("peak_tree_rss_mb"))
        row(P + "client CPU, s", "ttft", key("client_cpu_s"))

    for load, label in (("poisson", "~1,000 open streams (Poisson 250/s × 3.95 s)"),
                        ("closed", "1,000 concurrent streams, closed loop")):
        if not any(r.get("section") == "streams" and r.get("load") == load for r in runs):
            continue
        P = label + ": "
        row(P + "streams open at the server, max", "streams", lambda r: (r.get("server") or {}).get("open_max"), load)
        row(P + "requests ok / failed", "streams", key("completed"), load, ratio=False)
        rows[-1] = (rows[-1][0], rows[-1][1] + " / " + fmt(pick("streams", "joulebench", key("failed"), load)),
                    rows[-1][2] + " / " + fmt(pick("streams", "AIPerf", key("failed"), load)), "–")
        row(P + "added TTFT p50, ms", "streams", added("ttft_p50", "ttft_cfg"), load)
        row(P + "added TTFT p99, ms (goal < 1)", "streams", added("ttft_p99", "ttft_cfg"), load)
        row(P + "added TTFT p99 (vs the server's own p99), ms", "streams", vs_server("ttft_p99"), load)
        row(P + "TPOT mean − configured ITL, ms", "streams", added("tpot_mean", "itl_cfg"), load)
        row(P + "client peak RSS (process tree), MB (goal < 150)", "streams", key("peak_tree_rss_mb"), load)
        row(P + "client CPU, s", "streams", key("client_cpu_s"), load)
        row(P + "connections opened", "streams", key("connections"), load)
        row(P + "output tokens/s", "streams", key("output_tok_s"), load)

    lines = ["| metric | joulebench | AIPerf | ratio (joulebench ÷ AIPerf) |", "|---|---|---|---|"]
    lines += [f"| {m} | {j} | {a} | {r} |" for m, j, a, r in rows]
    n = {k[0]: v for k, v in reps.items()}
    lines += ["", "Medians over repetitions (at most): " + ", ".join(f"{s} {v}" for s, v in sorted(n.items()))
              + f"; runs during which other work kept more than {FOREIGN_LIMIT} cores busy are left out where"
              " the same load has runs without (all runs are in records.jsonl)."]
    verdicts = {(r["tool"], r["rate"]): r for r in recs if r.get("section") == "rate-verdict"}
    ladder = [r for r in runs if r.get("section") == "rate"]
    if ladder:
        lines += ["", "Rate ladder (scripted server: TTFT 5 ms, ITL 5 ms, 4 tokens; sustained = every request ok, "
                  f"achieved ≥ 90% of target, p99 TTFT ≤ configured + {RATE_TTFT_LIMIT_MS:.0f} ms):", "",
                  "| tool | target req/s | achieved req/s | ok/issued | TTFT p99, ms | AIPerf issue lag p99, ms "
                  "| connections | client CPU, s | other work, cores | sustained |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in ladder:
            v = verdicts.get((r["tool"], r["rate"]), {})
            lines.append(f"| {r['tool']} | {r['rate']} | {fmt(r.get('throughput_rps'))} | "
                         f"{fmt(r.get('completed'))}/{fmt(r.get('issued'))} | {fmt(r.get('ttft_p99'))} | "
                         f"{fmt(r.get('issue_lag_p99'))} | {fmt(r.get('connections'))} | {fmt(r.get('client_cpu_s'))} | "
                         f"{fmt(r.get('foreign_cores'))} | {'yes' if v.get('sustained') else 'no: ' + v.get('why_not', '?')} |")
    text = "\n".join(lines)
    (out / "table.md").write_text(text + "\n")
    return text


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jb", required=True)
    p.add_argument("--aiperf", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--fast-server", required=True)
    p.add_argument("--llama-server")
    p.add_argument("--llama-model")
    p.add_argument("--llama-threads", type=int, default=1,
                   help="llama-server -t (1 leaves a core to the client; see bench/README.md)")
    p.add_argument("--prompts", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sections", default="llama,rate,ttft,streams")
    p.add_argument("--table-only", action="store_true", help="print the table of --out's records.jsonl")
    a = p.parse_args()
    out = Path(a.out)
    if a.table_only:
        print(table(out))
        return
    quick = a.quick
    q = {
        "reps": 1 if quick else 3,
        "llama_reps": 1 if quick else 3,
        "ss_requests": 8 if quick else 30,
        "c2_requests": 12 if quick else 40,
        "rates": [250, 1000, 4000, 16000] if quick else [125, 250, 500, 1000, 2000, 4000, 8000, 16000],
        "refine": not quick,
        "rate_step_s": 3 if quick else 6,
        "ttft_rate": 100,
        "ttft_s": 5 if quick else 10,
        "streams_poisson_s": 8 if quick else 16,
        "streams_closed_requests": 2000 if quick else 5000,
        "streams_reps": 1 if quick else 2,
        "quiet_wait": 20 if quick else 60,
    }
    def interrupted(sig, frame):
        raise KeyboardInterrupt(f"signal {sig}")
    signal.signal(signal.SIGTERM, interrupted)
    b = Bench(a)
    b.log(f"# bench/serving ({'QUICK' if quick else 'full'}) {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {NCPU} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    t_all = time.time()
    for s in a.sections.split(","):
        if not s:
            continue
        t0 = time.time()
        b.log(f"## {s}")
        {"llama": section_llama, "rate": section_rate, "ttft": section_ttft, "streams": section_streams}[s](b, q)
        b.log(f"   ({time.time() - t0:.0f} s)")
    text = table(out)
    b.log("")
    b.log(text)
    b.log(f"\n(total {time.time() - t_all:.0f} s)")


if __name__ == "__main__":
    main()
