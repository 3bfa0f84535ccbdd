"""`edgeconv validate` options for labgrid places and fleet runs (issue 13).

`fleet_options` adds --devices, --jobs, --retries, --coordinator, --wait, --md to the validate
command (edgeconv/cli/device.py); `validate_fleet` runs several bundles and/or devices,
`validate_labgrid` one bundle on one labgrid place. Exit codes: 0 pass, 1 a check failed,
2 bad usage or input, 75 an infrastructure failure (device unreachable, place not acquired
within --wait, copy failed, timed out). Heavy imports (labgrid) happen inside the functions.
"""

from __future__ import annotations

import json

import click

from edgeconv.cli.common import FLOAT, INT


def fleet_options(command):
    for option in reversed(
        [
            click.option(
                "--devices",
                "devices_file",
                metavar="FLEET.toml",
                help="Run every BUNDLE on every device of this file (see 'Device farms' in the README).",
            ),
            click.option(
                "--jobs", type=INT, default=1, show_default=True, help="Devices running at once (fleet runs)."
            ),
            click.option(
                "--retries",
                type=INT,
                default=0,
                show_default=True,
                help="Retries of a job after an infrastructure failure (never after a failed check).",
            ),
            click.option(
                "--coordinator",
                metavar="HOST:PORT",
                help="labgrid coordinator for labgrid:// devices (default: $LG_COORDINATOR).",
            ),
            click.option(
                "--wait",
                type=FLOAT,
                default=60.0,
                show_default=True,
                help="Seconds to wait for a free labgrid place.",
            ),
            click.option("--md", "md_path", metavar="FILE", help="Write the fleet report as Markdown."),
        ]
    ):
        command = option(command)
    return command


def is_fleet(bundle_paths: tuple[str, ...], device: str | None, fleet: dict) -> bool:
    from edgeconv.core.errors import UsageError

    if fleet["devices_file"] and device:
        raise UsageError("validate: give --device D or --devices FLEET.toml, not both")
    if not fleet["devices_file"] and not device:
        raise UsageError("validate: expected --device D (one device) or --devices FLEET.toml (a fleet)")
    if fleet["md_path"] and not fleet["devices_file"] and len(bundle_paths) == 1:
        raise UsageError("--md: a fleet report; pass --devices FLEET.toml or several bundles")
    return bool(fleet["devices_file"]) or len(bundle_paths) > 1


def _stderr(message: str) -> None:
    click.echo(message, err=True)


def validate_labgrid(bundle_path, device, fleet, timeout, ssh, python, target, verify_key):
    from edgeconv.device.labgrid import validate_on_place

    return validate_on_place(
        bundle_path,
        device,
        fleet["coordinator"],
        fleet["wait"],
        log=_stderr,
        timeout=timeout,
        ssh=ssh,
        python=python,
        target=target,
        verify_key=verify_key,
    )


def validate_fleet(
    bundle_paths,
    device,
    fleet,
    as_json,
    junit_path,
    timeout,
    connect_timeout,
    identity,
    known_hosts,
    python,
    target,
    verify_key,
) -> None:
    from pathlib import Path

    from edgeconv.core.errors import EdgeconvError
    from edgeconv.core.io import write_bytes_atomic
    from edgeconv.device.fleet import FleetDevice, check_device, load_fleet, run_fleet

    base = FleetDevice(
        spec=device or "local",
        timeout=timeout,
        wait=fleet["wait"],
        connect_timeout=connect_timeout,
        identity=identity,
        known_hosts=known_hosts,
        python=python,
        coordinator=fleet["coordinator"],
    )
    if fleet["devices_file"]:
        devices = load_fleet(fleet["devices_file"], base)
    else:
        devices = [check_device(base, "--device")]
    report = run_fleet(list(bundle_paths), devices, fleet["jobs"], fleet["retries"], target, verify_key, log=_stderr)
    if junit_path:
        write_bytes_atomic(Path(junit_path), report.to_junit())
    if fleet["md_path"]:
        write_bytes_atomic(Path(fleet["md_path"]), report.to_markdown().encode())
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.to_text())
    code = report.exit_code
    if code:
        c = report.counts()
        err = EdgeconvError(
            f"validate: {c['fail']} failed, {c['infra']} infrastructure failure(s), {c['error']} error(s) "
            f"of {len(report.results)} job(s)"
        )
        err.exit_code = code  # 2 error, else 1 failed check, else 75 infrastructure (device/fleet.py)
        raise err
