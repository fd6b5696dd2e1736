"""Test support for the Jobs tests: a fake Hugging Face Hub on 127.0.0.1 that the real `huggingface_hub` client
talks to, a planner stand-in with fixed estimates, and helpers that write a tiny config and run the ft CLI in-process.

The server serves the endpoints the client calls for `whoami`, repo creation, write checks, commits, file listing and
downloads, and the Jobs API (run, inspect, list, cancel, logs as Server-Sent Events, hardware). Jobs follow a script
set by the test: the log lines they print, the stage they end in, and whether their first log stream drops midway.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
import time
import types
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

TERMINAL = ("COMPLETED", "CANCELED", "ERROR", "DELETED")


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)

    @property
    def sha(self) -> str:
        return self.commits[-1] if self.commits else "0" * 40


@dataclass
class JobScript:
    """How the next submitted job behaves."""

    logs: list[str] = field(default_factory=lambda: ["installing", "step 1/2 | loss 3.1", "done"])
    final_stage: str = "COMPLETED"
    final_message: str | None = None
    drop_first_stream_after: int | None = None  # lines sent before the first log stream is cut
    inspections_to_finish: int = 2  # inspections after which the job ends, when no client streams its logs


@dataclass
class FakeJob:
    id: str
    namespace: str
    body: dict
    script: JobScript
    stage: str = "RUNNING"
    message: str | None = None
    log_requests: int = 0
    inspections: int = 0

    def info(self, endpoint: str) -> dict:
        return {
            "id": self.id, "createdAt": "2026-01-02T03:04:05.000Z", "dockerImage": self.body.get("dockerImage"),
            "command": self.body.get("command"), "arguments": self.body.get("arguments", []),
            "environment": self.body.get("environment", {}), "secrets": sorted(self.body.get("secrets", {})),
            "flavor": self.body.get("flavor"), "labels": self.body.get("labels"), "volumes": self.body.get("volumes"),
            "status": {"stage": self.stage, "message": self.message},
            "owner": {"id": "0" * 24, "name": self.namespace, "type": "user"},
        }

    def finish(self) -> None:
        if self.stage not in TERMINAL:
            self.stage, self.message = self.script.final_stage, self.script.final_message


class FakeHub:
    """The server's state, shared by its handler threads; tests read and script it directly."""

    def __init__(self):
        self.tokens: dict[str, dict] = {}
        self.repos: dict[tuple[str, str], Repo] = {}
        self.jobs: dict[str, FakeJob] = {}
        self.requests: list[tuple[str, str, bytes]] = []
        self.unhandled: list[str] = []
        self.script = JobScript()
        self.lock = threading.RLock()
        self.server: ThreadingHTTPServer | None = None
        self.endpoint = ""

    def add_token(self, token: str, name: str, role: str = "write", orgs: tuple[str, ...] = ()) -> None:
        self.tokens[token] = {"name": name, "role": role, "orgs": list(orgs)}

    def add_repo(self, repo_type: str, repo_id: str, files: dict[str, bytes], private: bool = True) -> Repo:
        repo = Repo(repo_type, repo_id, private)
        repo.files.update(files)
        repo.commits.append(hashlib.sha1(repr(sorted(files)).encode()).hexdigest())
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def start(self) -> str:
        hub = self

        class Handler(HubHandler):
            state = hub

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.endpoint

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: FakeHub

    def log_message(self, format, *args):  # keep the test output quiet
        pass

    # ---- plumbing -------------------------------------------------------------------------------------------------

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def user(self) -> dict | None:
        header = self.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip()
        return self.state.tokens.get(token)

    def send(self, status: int, payload=None, headers: dict | None = None, body: bytes | None = None) -> None:
        if body is not None:
            data = body
        else:
            data = json.dumps({} if payload is None else payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if body is None else "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self.send(status, {"error": message}, headers)

    def dispatch(self) -> None:
        body = self.read_body()
        url = urlparse(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        with self.state.lock:
            self.state.requests.append((self.command, self.path, body))
        for method, pattern, handler in ROUTES:
            match = re.fullmatch(pattern, path)
            if match and method == self.command:
                return handler(self, match, query, body)
        with self.state.lock:
            self.state.unhandled.append(f"{self.command} {self.path}")
        self.error(404, f"fake hub: no route for {self.command} {path}")

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = dispatch

    # ---- account and repos ----------------------------------------------------------------------------------------

    def agent_harnesses(self, match, query, body):
        """The registry huggingface_hub reads to name the calling agent in its user agent; empty here."""
        self.send(200, {"standardEnvVars": [], "harnesses": {}})

    def whoami(self, match, query, body):
        user = self.user()
        if user is None:
            return self.error(401, "Invalid credentials in Authorization header")
        self.send(200, {"type": "user", "name": user["name"], "isPro": True,
                        "orgs": [{"name": org} for org in user["orgs"]],
                        "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": user["role"]}}})

    def writable(self, repo_id: str) -> bool:
        user = self.user()
        if user is None or user["role"] == "read":
            return False
        return repo_id.split("/")[0] in (user["name"], *user["orgs"])

    def create_repo(self, match, query, body):
        request = json.loads(body or b"{}")
        namespace = request.get("organization") or (self.user() or {}).get("name")
        repo_id = f"{namespace}/{request['name']}"
        repo_type = request.get("type") or "model"
        if not self.writable(repo_id):
            return self.error(403, "You don't have the rights to create a repo in this namespace")
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.state.endpoint}/{prefix}{repo_id}"
        with self.state.lock:
            if (repo_type, repo_id) in self.state.repos:
                return self.send(409, {"error": "You already created this repo", "url": url})
            self.state.repos[(repo_type, repo_id)] = Repo(repo_type, repo_id,
                                                             request.get("visibility", "public") != "public")
        self.send(200, {"url": url, "name": repo_id})

    def repo(self, match) -> Repo | None:
        return self.state.repos.get((match["type"].rstrip("s"), match["repo"]))

    def missing_repo(self):
        self.error(404, "Repository not found", "RepoNotFound")

    def auth_check(self, match, query, body):
        if self.repo(match) is None:
            return self.missing_repo()
        if match["write"] and not self.writable(match["repo"]):
            return self.error(403, "You don't have write access to this repo")
        self.send(200, {})

    def repo_info(self, match, query, body):
        repo = self.repo(match)
        if repo is None:
            return self.missing_repo()
        siblings = [{"rfilename": name, "size": len(data)} for name, data in sorted(repo.files.items())]
        self.send(200, {"id": repo.repo_id, "private": repo.private, "sha": repo.sha, "siblings": siblings})

    def tree(self, match, query, body):
        repo = self.repo(match)
        if repo is None:
            return self.missing_repo()
        prefix = (match["path"] or "").strip("/")
        entries = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                   for name, data in sorted(repo.files.items()) if not prefix or name.startswith(prefix + "/")]
        self.send(200, entries)

    def preupload(self, match, query, body):
        files = json.loads(body)["files"]
        self.send(200, {"files": [{"path": item["path"], "uploadMode": "regular", "shouldIgnore": False}
                                  for item in files]})

    def commit(self, match, query, body):
        repo = self.repo(match)
        if repo is None:
            return self.missing_repo()
        if not self.writable(repo.repo_id):
            return self.error(403, "You don't have write access to this repo")
        with self.state.lock:
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    repo.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "deletedFile":
                    repo.files.pop(item["value"]["path"], None)
            sha = hashlib.sha1(f"{repo.repo_id}:{len(repo.commits)}".encode()).hexdigest()
            repo.commits.append(sha)
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        self.send(200, {"commitOid": sha, "commitUrl": f"{self.state.endpoint}/{prefix}{repo.repo_id}/commit/{sha}"})

    def resolve(self, match, query, body):
        repo = self.state.repos.get(((match["type"] or "models/").rstrip("/").rstrip("s"), match["repo"]))
        if repo is None:
            return self.missing_repo()
        data = repo.files.get(match["path"])
        if data is None:
            return self.error(404, "Entry not found", "EntryNotFound")
        etag = hashlib.sha1(data).hexdigest()
        self.send(200, body=data, headers={"X-Repo-Commit": repo.sha, "ETag": f'"{etag}"'})

    # ---- jobs -----------------------------------------------------------------------------------------------------

    def hardware(self, match, query, body):
        self.send(200, [{"name": "cpu-basic", "prettyName": "CPU basic", "cpu": "2 vCPU", "ram": "16 GB",
                         "accelerator": None, "unitCostUSD": 0.0002, "unitLabel": "minute"},
                        {"name": "a10g-small", "prettyName": "Nvidia A10G - small", "cpu": "4 vCPU", "ram": "15 GB",
                         "accelerator": {"model": "A10G", "quantity": "1", "vram": "24 GB"},
                         "unitCostUSD": 0.0167, "unitLabel": "minute"}])

    def job_owner_ok(self, namespace: str) -> bool:
        user = self.user()
        return user is not None and namespace in (user["name"], *user["orgs"])

    def run_job(self, match, query, body):
        if not self.job_owner_ok(match["ns"]):
            return self.error(403, "You cannot run jobs in this namespace")
        if (self.user() or {}).get("role") == "read":
            return self.error(403, "This token has no permission to start jobs")
        with self.state.lock:
            job_id = f"{len(self.state.jobs) + 1:024x}"
            job = FakeJob(job_id, match["ns"], json.loads(body), self.state.script)
            self.state.jobs[job_id] = job
        self.send(200, job.info(self.state.endpoint))

    def job(self, match) -> FakeJob | None:
        job = self.state.jobs.get(match["id"])
        return job if job and job.namespace == match["ns"] else None

    def inspect_job(self, match, query, body):
        job = self.job(match)
        if job is None:
            return self.error(404, "Job not found")
        with self.state.lock:
            job.inspections += 1
            if job.inspections >= job.script.inspections_to_finish and not job.log_requests:
                job.finish()
        self.send(200, job.info(self.state.endpoint))

    def list_jobs(self, match, query, body):
        jobs = [job.info(self.state.endpoint) for job in self.state.jobs.values() if job.namespace == match["ns"]]
        self.send(200, jobs)

    def cancel_job(self, match, query, body):
        job = self.job(match)
        if job is None:
            return self.error(404, "Job not found")
        with self.state.lock:
            if job.stage not in TERMINAL:
                job.stage, job.message = "CANCELED", None
        self.send(200, {})

    def job_logs(self, match, query, body):
        job = self.job(match)
        if job is None:
            return self.error(404, "Job not found")
        with self.state.lock:
            job.log_requests += 1
            first = job.log_requests == 1
        lines = ["===== Job started at 2026-01-02 03:04:05 ====="] + job.script.logs
        cut = job.script.drop_first_stream_after
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, line in enumerate(lines):
            if first and cut is not None and index == cut + 1:
                self.drop_connection()
                return
            event = json.dumps({"data": line, "timestamp": f"2026-01-02T03:04:{index:02d}.000Z"})
            self.write_chunk(f"data: {event}\n\n".encode())
        with self.state.lock:
            job.finish()
        self.write_chunk(b"")

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def drop_connection(self) -> None:
        """Cut the stream mid-body, as a network drop does: no closing chunk, the socket just closes."""
        self.wfile.flush()
        time.sleep(0.05)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


REPO = r"(?P<repo>[^/]+/[^/]+)"
ROUTES = [
    ("GET", r"/api/whoami-v2", HubHandler.whoami),
    ("GET", r"/api/agent-harnesses", HubHandler.agent_harnesses),
    ("POST", r"/api/repos/create", HubHandler.create_repo),
    ("GET", rf"/api/(?P<type>models|datasets|spaces)/{REPO}/auth-check(?P<write>/write)?", HubHandler.auth_check),
    ("GET", rf"/api/(?P<type>models|datasets|spaces)/{REPO}(?:/revision/[^/]+)?", HubHandler.repo_info),
    ("GET", rf"/api/(?P<type>models|datasets|spaces)/{REPO}/tree/[^/]+(?P<path>/.*)?", HubHandler.tree),
    ("POST", rf"/api/(?P<type>models|datasets|spaces)/{REPO}/preupload/[^/]+", HubHandler.preupload),
    ("POST", rf"/api/(?P<type>models|datasets|spaces)/{REPO}/commit/[^/]+", HubHandler.commit),
    ("GET", rf"/(?P<type>datasets/|spaces/)?{REPO}/resolve/[^/]+/(?P<path>.+)", HubHandler.resolve),
    ("HEAD", rf"/(?P<type>datasets/|spaces/)?{REPO}/resolve/[^/]+/(?P<path>.+)", HubHandler.resolve),
    ("GET", r"/api/jobs/hardware", HubHandler.hardware),
    ("POST", r"/api/jobs/(?P<ns>[^/]+)", HubHandler.run_job),
    ("GET", r"/api/jobs/(?P<ns>[^/]+)", HubHandler.list_jobs),
    ("GET", r"/api/jobs/(?P<ns>[^/]+)/(?P<id>[^/]+)", HubHandler.inspect_job),
    ("POST", r"/api/jobs/(?P<ns>[^/]+)/(?P<id>[^/]+)/cancel", HubHandler.cancel_job),
    ("GET", r"/api/jobs/(?P<ns>[^/]+)/(?P<id>[^/]+)/logs", HubHandler.job_logs),
]


# ---- planner stand-in ------------------------------------------------------------------------------------------------

# Flavor facts from the Hub pricing page (2026): GPUs, bfloat16 support, USD per hour.
FLAVOR_FACTS = {
    "cpu-basic": (0, False, 0.01), "cpu-upgrade": (0, False, 0.03), "t4-small": (1, False, 0.40),
    "t4-medium": (1, False, 0.60), "l4x1": (1, True, 0.80), "l4x4": (4, True, 3.80), "l40sx1": (1, True, 1.80),
    "a10g-small": (1, True, 1.00), "a10g-large": (1, True, 1.50), "a10g-largex2": (2, True, 3.00),
    "a10g-largex4": (4, True, 5.00), "a100-large": (1, True, 2.50), "a100x4": (4, True, 10.00),
    "a100x8": (8, True, 20.00), "h200": (1, True, 5.00), "h200x8": (8, True, 40.00),
}


def install_planner(monkeypatch, time_s: float = 600.0, peak_memory_gb: float = 3.0) -> list:
    """Make the planner return fixed estimates; return the flavors `estimate_for_flavor` was called with.

    Every GPU flavor trains in `time_s`, a CPU flavor 100 times slower. The real `ft.plan.FLAVORS` is kept when the
    planner is installed; without it, a stand-in module takes its place.
    """
    import sys

    requested: list[str] = []
    try:
        import ft.plan as plan
    except ImportError:
        plan = None
    if not hasattr(plan, "FLAVORS"):
        plan = types.ModuleType("ft.plan")
        plan.FLAVORS = {name: types.SimpleNamespace(name=name, gpus=gpus, supports_bf16=bf16, price_per_hour_usd=price)
                        for name, (gpus, bf16, price) in FLAVOR_FACTS.items()}
        monkeypatch.setitem(sys.modules, "ft.plan", plan)

    def fixed_estimate(flavor):
        info = plan.FLAVORS[flavor]
        seconds = time_s if info.gpus else time_s * 100
        return types.SimpleNamespace(flavor=flavor, fits=True, blocked=None, peak_memory_gb=peak_memory_gb,
                                     time_s=seconds, cost_usd=info.price_per_hour_usd * seconds / 3600,
                                     gpus=info.gpus, supports_bf16=info.supports_bf16)

    def estimate_for_flavor(loaded, flavor):
        requested.append(flavor)
        return fixed_estimate(flavor)

    def plan_run(loaded):
        estimates = [fixed_estimate(name) for name in plan.FLAVORS]
        cheapest = min(estimates, key=lambda guess: (guess.cost_usd, guess.time_s)).flavor
        return types.SimpleNamespace(estimates=estimates, cheapest=cheapest)

    monkeypatch.setattr(plan, "estimate_for_flavor", estimate_for_flavor, raising=False)
    monkeypatch.setattr(plan, "plan_run", plan_run, raising=False)
    return requested


# ---- tiny config and in-process CLI ----------------------------------------------------------------------------------

ROWS = [
    {"messages": [{"role": "user", "content": f"Remind me in {minutes} minutes to {task}."},
                  {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {
                      "name": "set_reminder", "arguments": json.dumps({"text": task, "minutes": minutes})}}]},
                  {"role": "tool", "tool_call_id": "call_1", "name": "set_reminder", "content": '{"status": "ok"}'},
                  {"role": "assistant", "content": f"Done: {task} in {minutes} minutes."}],
     "tools": [{"type": "function", "function": {
         "name": "set_reminder", "description": "Set a reminder that fires after some minutes.",
         "parameters": {"type": "object", "properties": {"text": {"type": "string"}, "minutes": {"type": "integer"}},
                        "required": ["text", "minutes"]}}}]}
    for minutes, task in [(5, "call mum"), (12, "move the car"), (30, "water the plants"), (45, "stretch")]
]


def write_config(folder: Path, model: str = "HuggingFaceTB/SmolLM2-135M-Instruct", extra: str = "") -> Path:
    """Write four tool-call rows and a config that trains on them for 2 steps; return the config path.

    `extra` is appended after the `output:` section: indent it by two spaces to add output keys.
    """
    data = folder / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    config = folder / "tiny.yaml"
    config.write_text(f"""# Run: ft submit tiny.yaml
model:
  name: {model}
data:
  train: {data}
  max_length: 256
training:
  max_steps: 2
  batch_size: 2
  warmup_ratio: 0.0
output:
  dir: {folder / 'runs'}
{extra}""")
    return config


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_ft(capsys, *args: str) -> CliResult:
    """Run `ft ARGS` in this process through `ft.cli.main`."""
    import ft.cli

    capsys.readouterr()
    code = ft.cli.main(list(args))
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)
