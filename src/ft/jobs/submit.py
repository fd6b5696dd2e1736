"""`ft submit`: check everything, then run the config as a Hugging Face Job or as a local background job.

Every check that can fail on the user's input (config, data, flavor, precision, memory, token, write access) runs
before anything is uploaded or submitted. `--dry-run` runs the checks that need no network, reports which it
skipped, and prints the exact job spec.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ft import __version__
from ft.config import LoadedConfig, load_config
from ft.errors import FtError
from ft.jobs import JobFailed
from ft.jobs import hardware, hf, local
from ft.jobs.checks import CheckReport, check_data, hub_offline
from ft.jobs.pins import export_requirements, find_pin, parse_pins, select_pins, wheel_name
from ft.jobs.spec import (CONFIG_FILE, JOB_PYTHON, JOB_SAVE_EVERY_MINUTES, REQUIREMENTS_FILE, RUN_SCRIPT, InputFile,
                          JobSpec, build_job_config, describe_spec, job_command, job_labels, render_run_script,
                          require_hub_model, require_hub_repo)
from ft.jobs.store import JobRecord, JobStore

CHECK_FLAVOR = "cpu-basic"
CHECK_TIMEOUT_S = 1800


@dataclass
class SubmitOptions:
    """The options of `ft submit`, as parsed from the command line."""

    config: str
    overrides: list[str] = field(default_factory=list)
    backend: str = "hf"
    flavor: str = "auto"
    timeout: str = "auto"
    namespace: str | None = None
    detach: bool = False
    dry_run: bool = False
    check: bool = False
    emit_script: str | None = None
    ft_source: str | None = None


def submit(options: SubmitOptions, write=print) -> int:
    """Run `ft submit`; return the exit code (0 when the job completed, or was submitted with --detach)."""
    loaded = load_config(options.config, options.overrides)
    if options.emit_script:
        return emit(loaded, options, write)
    if options.backend == "local":
        return submit_local(loaded, options, write)
    return submit_hf(loaded, options, write)


def emit(loaded: LoadedConfig, options: SubmitOptions, write) -> int:
    from ft.jobs.script import emit_script

    script, wheel = emit_script(loaded, Path(options.emit_script), options.ft_source)
    write(f"wrote {script}" + (f" and {wheel}" if wheel else ""))
    keep = f" (keep {wheel.name} beside it)" if wheel else ""
    write(f"run it with: uv run {script}{keep}")
    return 0


def default_run_name(loaded: LoadedConfig) -> str:
    return loaded.config.output.run_name or f"{loaded.path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"


# ---- Hugging Face Jobs ----------------------------------------------------------------------------------------------


def submit_hf(loaded: LoadedConfig, options: SubmitOptions, write) -> int:
    mode = " (dry run: nothing is uploaded or submitted)" if options.dry_run else ""
    write(f"ft submit {loaded.path} -> Hugging Face Jobs{mode}\nchecks:")
    report = CheckReport(write=write)
    spec = plan_hf_job(loaded, options, report)
    if options.dry_run:
        return print_dry_run(spec, report, write)

    token = hf.read_token()
    api = hf.make_api(token)
    confirm_account(api, loaded, options.namespace, spec, report)
    upload_inputs(api, spec, report)
    if options.check:
        run_check_job(api, loaded, spec, token, write)
    info = hf.start_job(api, spec, token)
    store = JobStore()
    record = hf.record_from_info(info, spec, str(loaded.path))
    store.add(record)
    print_submitted(record, write)
    if options.detach:
        return 0
    return follow_to_end(record, write, lambda: hf.follow_logs(api, record, write),
                         lambda: hf.refresh(api, store, record))


def plan_hf_job(loaded: LoadedConfig, options: SubmitOptions, report: CheckReport) -> JobSpec:
    """Run every check that needs no network and return the job spec (not yet uploaded, no namespace yet)."""
    report.ok(f"config {loaded.path} is valid")
    require_hub_model(loaded)
    hub_repo = output_repo(loaded, options.dry_run, report)
    flavor, guess = check_hardware(loaded, options.flavor, report, offline=options.dry_run)
    timeout = choose_timeout(options.timeout, guess, report)
    check_data(loaded, report, offline=options.dry_run)
    return build_spec(loaded, flavor, timeout, hub_repo, options.namespace, report)


def confirm_account(api, loaded: LoadedConfig, namespace: str | None, spec: JobSpec, report: CheckReport) -> None:
    """Check the token, the namespace and write access to both repos; set the spec's namespace and inputs repo."""
    identity = hf.confirm_identity(api)
    report.ok(f"token of {identity.name} (role {identity.role or 'unknown'})")
    if namespace and namespace not in (identity.name, *identity.orgs):
        raise FtError(f"--namespace {namespace}: it is neither the token's user {identity.name!r} nor one of its "
                      f"organizations ({', '.join(identity.orgs) or 'none'}).")
    spec.namespace = namespace or identity.name
    spec.inputs_repo = hf.inputs_repo_id(spec.namespace)
    hf.confirm_write_access(api, identity, spec.hub_repo, "model", loaded.config.output.private)
    report.ok(f"write access to output.hub_repo {spec.hub_repo}")
    hf.confirm_write_access(api, identity, spec.inputs_repo, "dataset", private=True)


def upload_inputs(api, spec: JobSpec, report: CheckReport) -> None:
    """Build the ft wheel and upload every input in one commit; set the spec's inputs revision."""
    from ft.jobs.pins import build_wheel

    with tempfile.TemporaryDirectory(prefix="ft-submit-") as folder:
        wheel = build_wheel(Path(folder))
        expected = spec.file(wheel_name(__version__))
        if wheel.name != expected.path:
            raise FtError(f"`uv build` wrote {wheel.name}, but the running ft is version {__version__}. Run `uv sync` "
                          "so that the installed ft matches pyproject.toml, then submit again.")
        expected.source = wheel
        spec.inputs_revision = hf.upload_inputs(api, spec)
    report.ok(f"inputs uploaded to {spec.inputs_repo}/{spec.inputs_path} (commit {spec.inputs_revision[:12]})")


def output_repo(loaded: LoadedConfig, dry_run: bool, report: CheckReport) -> str:
    """Return output.hub_repo; a dry run goes on with a placeholder and a warning, a real submit stops."""
    if loaded.config.output.hub_repo or not dry_run:
        return require_hub_repo(loaded)
    placeholder = f"your-name/{loaded.path.stem}"
    report.warn(f"output.hub_repo is not set, and a real submit stops here: the job's disk is discarded when it ends, "
                f"so the run is pushed to that repo. Set it in the config or pass "
                f"--set output.hub_repo=your-name/model-name. This dry run shows {placeholder}.")
    return placeholder


def check_hardware(loaded: LoadedConfig, requested: str, report: CheckReport, offline: bool):
    """Return the flavor and the planner's estimate for it (None when a dry run cannot estimate offline).

    Precision, method and memory are checked against the flavor before anything is submitted.
    """
    with hub_offline(offline):
        if requested == "auto":
            flavor, guess = hardware.choose_flavor(loaded)
        else:
            flavor, guess = requested, None
        info = hardware.flavor_info(flavor)
        problem = hardware.precision_problem(loaded, flavor)
        if problem:
            raise FtError(f"{loaded.path}: {problem}")
        report.ok(f"model.precision {loaded.config.model.precision} and training.method "
                  f"{loaded.config.training.method} run on {flavor}")
        if guess is None:
            try:
                guess = hardware.estimate(loaded, flavor)
            except FtError as err:
                if not offline:
                    raise
                report.skip(f"memory and time estimate on {flavor}: {err}")
                return flavor, None
    hardware.check_fits(loaded, flavor, guess)
    picked = " (picked by --flavor auto: the cheapest flavor that fits)" if requested == "auto" else ""
    job_cost = (guess.time_s + hardware.STARTUP_S) * info.price_per_hour_usd / 3600
    training = f"{hardware.format_duration(guess.time_s)} ({hardware.format_usd(guess.cost_usd)})"
    report.ok(f"flavor {flavor}{picked}: {info.gpus} GPU(s); needs about {guess.peak_memory_gb:.1f} GB per device; "
              f"estimated training time {training}, about {hardware.format_usd(job_cost)} with "
              f"{hardware.STARTUP_S // 60} min of start-up at ${info.price_per_hour_usd:.2f}/h "
              "(estimates from `ft plan`)")
    return flavor, guess


def choose_timeout(requested: str, guess, report: CheckReport) -> int | None:
    """Return the job timeout in seconds; None only in a dry run that could not estimate the training time."""
    if guess is None and requested == "auto":
        report.skip("timeout: `auto` is sized from the estimate, which a real submit makes online")
        return None
    timeout = hardware.choose_timeout(requested, guess.time_s if guess else None)
    report.ok(f"timeout {timeout.seconds} s ({hardware.format_duration(timeout.seconds)}): {timeout.reason}")
    if timeout.warning:
        report.warn(timeout.warning)
    return timeout.seconds


def build_spec(loaded: LoadedConfig, flavor: str, timeout_s: int | None, hub_repo: str, namespace: str | None,
               report: CheckReport) -> JobSpec:
    run_name = default_run_name(loaded)
    config_text, data_files = build_job_config(loaded, run_name, hub_repo)
    training = loaded.config.training
    if not training.save_every_steps and not training.save_every_minutes:
        report.ok(f"checkpoints: training.save_every_minutes {JOB_SAVE_EVERY_MINUTES:g} in the job, which pushes each "
                  "checkpoint to output.hub_repo, because the config sets no checkpoint interval")
    requirements = export_requirements()
    pins = select_pins(parse_pins(requirements), JOB_PYTHON)
    versions = ", ".join(f"{name} {'/'.join(pin.version for pin in find_pin(pins, name))}"
                         for name in ("torch", "transformers", "peft", "accelerate"))
    report.ok(f"dependencies: {len(pins)} packages pinned by uv.lock for Python {JOB_PYTHON} ({versions}), and the "
              f"ft {__version__} wheel built from this checkout")
    nproc = max(hardware.flavor_info(flavor).gpus, 1)
    spec = JobSpec(run_name=run_name, flavor=flavor, timeout_s=timeout_s, nproc=nproc, hub_repo=hub_repo,
                   command=job_command(nproc), labels=job_labels(run_name), namespace=namespace,
                   inputs_path=f"jobs/{run_name}-{secrets.token_hex(3)}")
    if namespace:
        spec.inputs_repo = hf.inputs_repo_id(namespace)
    # Names only the run, so that `ft jobs pull` works for this job from any machine; no secret here.
    spec.environment.update(FT_RUN_NAME=run_name, FT_OUTPUT_REPO=hub_repo)
    wheel = wheel_name(__version__)
    spec.files = [InputFile(RUN_SCRIPT, text=render_run_script(wheel)), InputFile(CONFIG_FILE, text=config_text),
                  InputFile(REQUIREMENTS_FILE, text=requirements), InputFile(wheel), *data_files]
    return spec


def print_dry_run(spec: JobSpec, report: CheckReport, write) -> int:
    token_note = "a token is configured" if hf.token_present() else "no token is configured yet (run `hf auth login`)"
    report.skip(f"token identity (whoami) and its write access to output.hub_repo {spec.hub_repo}: no network in a "
                f"dry run; {token_note}")
    report.skip("upload of the inputs and the job submission: dry run")
    write("job spec:")
    write(describe_spec(spec))
    for path in (RUN_SCRIPT, CONFIG_FILE):
        write(f"--- {path} ---")
        write(spec.file(path).text.rstrip("\n"))
    write(f"dry run: nothing was submitted; skipped {len(report.skipped())} check(s) that need the network.")
    return 0


def run_check_job(api, loaded: LoadedConfig, spec: JobSpec, token: str, write) -> None:
    """Run `ft doctor` in the job's image on cpu-basic and wait for it. Raise JobFailed unless it completes."""
    from dataclasses import replace

    check = replace(spec, flavor=CHECK_FLAVOR, timeout_s=CHECK_TIMEOUT_S, nproc=1,
                    command=job_command(1)[:-1] + ["doctor", *cpu_check_overrides(loaded)],
                    labels={**spec.labels, "ft-check": "doctor"})
    info = hf.start_job(api, check, token)
    write(f"check job {info.id} on {CHECK_FLAVOR}: ft doctor in the job's image ({info.url})")
    record = JobRecord(id=info.id, backend="hf", run_name=spec.run_name, config_path="", namespace=spec.namespace)
    stage = hf.follow_logs(api, record, write)
    info = hf.inspect(api, record)
    if info.status.stage != "COMPLETED":
        detail = f" ({info.status.message})" if info.status.message else ""
        raise JobFailed(f"the check job {info.id} ended {stage}{detail}. Its log is above; fix the problem and submit "
                        "again. The training job was not started.")
    write(f"check job {info.id}: COMPLETED")


def cpu_check_overrides(loaded: LoadedConfig) -> list[str]:
    """Return `--set` arguments that let `ft doctor` pass on a CPU the settings that need the job's GPU.

    The precision and the method were already checked against the training flavor. On cpu-basic, doctor would fail
    float16 and qlora because there is no GPU, so the check job runs them as `auto` and `lora`.
    """
    overrides = []
    if loaded.config.model.precision == "float16":
        overrides += ["--set", "model.precision=auto"]
    if loaded.config.training.method == "qlora":
        overrides += ["--set", "training.method=lora"]
    return overrides


# ---- local ----------------------------------------------------------------------------------------------------------


def submit_local(loaded: LoadedConfig, options: SubmitOptions, write) -> int:
    mode = " (dry run: nothing is started)" if options.dry_run else ""
    write(f"ft submit {loaded.path} -> local background job{mode}\nchecks:")
    report = CheckReport(write=write)
    report.ok(f"config {loaded.path} is valid")
    if os.name != "posix":
        raise FtError("--backend local needs POSIX process groups (Linux or macOS), to stop the training with its "
                      "checkpoint. Run `ft train CONFIG` in a terminal instead.")
    if options.flavor != "auto":
        report.warn(f"--flavor {options.flavor} has no effect with --backend local; the job runs on this machine")
    timeout_s = None if options.timeout == "auto" else hardware.parse_timeout(options.timeout)
    check_data(loaded, report, offline=options.dry_run)
    store = JobStore()
    record, config_text = local.prepare_record(store, loaded, timeout_s)
    if options.dry_run:
        write(f"job {record.id}: {' '.join(record.spec['command'])}\n  in {record.spec['cwd']}; run folder "
              f"{record.run_dir}; log {record.log_path}\n--- config snapshot ---\n{config_text.rstrip()}")
        return 0
    if options.check:
        run_local_doctor(loaded, options, write)
    record = local.start(store, record, config_text)
    print_submitted(record, write)
    if options.detach:
        return 0
    return follow_to_end(record, write, lambda: local.follow_log(store, record, write),
                         lambda: local.refresh(store, record))


def run_local_doctor(loaded: LoadedConfig, options: SubmitOptions, write) -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "ft.cli", "doctor", str(loaded.path)]
    for item in options.overrides:
        command += ["--set", item]
    write(f"check: {' '.join(command)}")
    if subprocess.run(command).returncode != 0:
        raise JobFailed("`ft doctor` failed (its output is above); the job was not started.")


# ---- shared ---------------------------------------------------------------------------------------------------------


def print_submitted(record: JobRecord, write) -> None:
    where = record.url or record.log_path
    write(f"job {record.id} submitted ({where})\n"
          f"  follow:  ft jobs logs {record.id} -f\n"
          f"  cancel:  ft jobs cancel {record.id}\n"
          f"  results: ft jobs pull {record.id}")


def follow_to_end(record: JobRecord, write, follow, refresh) -> int:
    """Follow the job's log until it ends; return 0 when it completed. Ctrl-C stops following, not the job."""
    try:
        follow()
    except KeyboardInterrupt:
        write(f"\nstopped following; job {record.id} keeps running. `ft jobs logs {record.id} -f` follows it again, "
              f"`ft jobs cancel {record.id}` stops it.")
        return 130
    final = refresh()
    return report_end(final, write)


def report_end(record: JobRecord, write) -> int:
    """Print how the job ended; return 0 when it completed. Raise JobFailed otherwise."""
    if record.stage == "COMPLETED":
        write(f"job {record.id}: COMPLETED. `ft jobs pull {record.id}` fetches the run folder.")
        return 0
    raise JobFailed(failure_message(record))


def failure_message(record: JobRecord) -> str:
    detail = f" ({record.message})" if record.message else ""
    text = f"job {record.id} ended {record.stage}{detail}."
    if record.message and "timeout" in record.message.lower():
        limit = f"its timeout of {record.timeout_s} s" if record.timeout_s else "its timeout"
        text += (f" It ran past {limit}: submit again with a longer --timeout (or the default `auto`, sized from "
                 "the estimate).")
        if record.hub_repo:
            text += f" Checkpoints pushed before the stop are in {record.hub_repo}."
    elif record.stage == "CANCELED" and record.backend == "local" and record.run_dir:
        text += f" Continue it with `ft train CONFIG --resume {record.run_dir}`."
    elif record.stage == "ERROR":
        text += f" See `ft jobs logs {record.id}`."
    return text
