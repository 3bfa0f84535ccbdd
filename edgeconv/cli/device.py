"""`edgeconv bundle` and `edgeconv validate` (registered in cli.py with cli.add_command).

Both raise edgeconv.core.errors exceptions (the CLI maps them to one-line messages and exit codes);
validate raises CheckFailed (exit 1) when a verdict fails. Heavy imports happen inside the
commands.
"""

from __future__ import annotations

import json

import click

from edgeconv.cli.common import FLOAT, INT, check_sample_count, check_seed
from edgeconv.cli.fleet import fleet_options, is_fleet, validate_fleet, validate_labgrid


@click.command()
@click.argument("folder", metavar="DIR")
@click.option("--target", required=True, help="Target name or profile .toml (cpu, arm, npu, mcu).")
@click.option("-o", "--output", "output_path", required=True, metavar="FILE", help="The bundle to write (.tar.gz).")
@click.option(
    "--inputs",
    "inputs_path",
    metavar="X.npz",
    help="Float32 inputs (N x H x W x C). "
    "Default: parity's seeded synthetic set, distinct from the calibration samples.",
)
@click.option("--samples", type=INT, default=32, show_default=True, help="Size of the synthetic input set.")
@click.option("--seed", type=INT, default=0, show_default=True, help="Seed of the synthetic inputs.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (the manifest's summary).")
@click.option(
    "--sign",
    "sign_key",
    metavar="KEY.pem",
    help="Sign the manifest with this Ed25519 private key (openssl genpkey -algorithm ed25519 -out KEY.pem).",
)
def bundle(folder, target, output_path, inputs_path, samples, seed, as_json, sign_key):
    """Write a self-contained on-device validation bundle (.tar.gz).

    It holds the target's artifact, the quantized inputs, the float reference and the int8
    golden outputs, the tolerance, a manifest with SHA-256 hashes and versions, and runner.py,
    which needs only Python, numpy and the target runtime on the device. Run it with
    'edgeconv validate BUNDLE --device ...'. The same inputs give a byte-identical bundle.
    """
    from pathlib import Path

    from edgeconv.artifacts.folder import load_build
    from edgeconv.backends import check_artifact_loads
    from edgeconv.core.io import check_output_path, write_bytes_atomic
    from edgeconv.device.bundle import MANIFEST, SIGNATURE, bundle_files, load_signing_key, signature_bytes, tar_gz
    from edgeconv.parity.run import comparison_inputs
    from edgeconv.plan.targets import load_target

    check_output_path(Path(output_path), "-o/--output")
    key = load_signing_key(sign_key) if sign_key else None
    check_sample_count(samples, "--samples")
    check_seed(seed)
    build = load_build(folder)
    tgt = load_target(target)
    check_artifact_loads(build, tgt)  # a corrupt artifact is refused here, not on the device
    x, source = comparison_inputs(build, inputs_path, samples, seed, min_synthetic=1)
    files = bundle_files(build, tgt, x, source)
    if key is not None:
        files[SIGNATURE] = signature_bytes(files[MANIFEST], key)
    data = tar_gz(files)
    write_bytes_atomic(Path(output_path), data, "-o/--output")
    manifest = json.loads(files[MANIFEST])
    if as_json:
        click.echo(
            json.dumps(
                {
                    "bundle": output_path,
                    "bytes": len(data),
                    "model": manifest["model"],
                    "target": tgt.name,
                    "samples": len(x),
                    "signed": key is not None,
                    "files": manifest["files"],
                },
                indent=2,
            )
        )
        return
    click.echo(f"wrote {output_path} ({len(data):,} bytes): {manifest['model']} for {tgt.name}, {len(x)} samples")
    for name, digest in manifest["files"].items():
        click.echo(f"  {name:<28} {len(files[name]):>10,} B  sha256 {digest[:16]}")
    click.echo(f"  {MANIFEST:<28} {len(files[MANIFEST]):>10,} B")
    if key is not None:
        click.echo(f"  {SIGNATURE:<28} {len(files[SIGNATURE]):>10,} B  Ed25519 signature of {MANIFEST}")


@click.command()
@click.argument("bundle_paths", metavar="BUNDLE...", nargs=-1, required=True)
@click.option(
    "--device",
    metavar="D",
    help="local | ssh://user@host[:port] | qemu-aarch64 | labgrid://PLACE | labgrid://?tags=k=v,...",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--junit", "junit_path", metavar="FILE", help="Write JUnit XML (one test case per check).")
@click.option("--timeout", type=FLOAT, default=600.0, show_default=True, help="Run timeout in seconds.")
@click.option("--connect-timeout", type=INT, default=10, show_default=True, help="ssh connection timeout (s).")
@click.option("--identity", metavar="FILE", help="ssh private key (default: $EDGECONV_SSH_IDENTITY, else ssh's own).")
@click.option(
    "--known-hosts",
    metavar="FILE",
    help="ssh known-hosts file (default: $EDGECONV_SSH_KNOWN_HOSTS, else ssh's own; new hosts accepted).",
)
@click.option(
    "--python",
    "python",
    metavar="EXE",
    help="Python on the device (default: $EDGECONV_DEVICE_PYTHON, else python3 over ssh, this interpreter for local).",
)
@click.option(
    "--target",
    "target",
    metavar="PROFILE",
    help="The target profile whose tolerance and runtime options apply (default: the built-in profile the bundle names).",
)
@click.option(
    "--verify",
    "verify_key",
    metavar="KEY.pub.pem",
    help="Refuse the bundle unless its manifest carries a valid Ed25519 signature by this public key.",
)
@click.option(
    "--build",
    "build_dir",
    metavar="DIR",
    help="Recompute the golden outputs from this build folder; refuse a bundle whose artifact or goldens differ.",
)
@fleet_options
def validate(
    bundle_paths,
    device,
    as_json,
    junit_path,
    timeout,
    connect_timeout,
    identity,
    known_hosts,
    python,
    target,
    verify_key,
    build_dir,
    **fleet,
):
    """Run a bundle on a device and apply parity's checks to its outputs.

    local runs runner.py in a subprocess; ssh:// copies the bundle with scp and runs it with
    ssh (BatchMode, connection and run timeouts); qemu-aarch64 runs it with an aarch64 Python
    under qemu-aarch64-static (LiteRT reference kernels; build the userland with
    scripts/build_aarch64_userland.sh); labgrid:// reserves and acquires a place from the
    coordinator and runs over its NetworkService like ssh://, releasing the place in every case.
    Several bundles or --devices FLEET.toml run every bundle on every device (--jobs at once) into
    one report. Exit 0 pass, 1 a check failed, 2 bad usage or input, 75 infrastructure failure
    (device unreachable, place not acquired within --wait, copy failed, timed out).
    """
    if build_dir is not None and (is_fleet(bundle_paths, device, fleet) or str(device).startswith("labgrid://")):
        from edgeconv.core.errors import UsageError

        raise UsageError("--build: applies to one bundle on a local, ssh:// or qemu device (not a fleet or labgrid)")
    if is_fleet(bundle_paths, device, fleet):
        return validate_fleet(
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
        )
    bundle_path = bundle_paths[0]
    from pathlib import Path

    from edgeconv.core.errors import CheckFailed
    from edgeconv.core.io import check_output_path, write_bytes_atomic
    from edgeconv.device.validate import SshOptions, check_timeouts, parse_device
    from edgeconv.device.validate import validate as run_validate

    dev = device if device.startswith("labgrid://") else parse_device(device)
    check_timeouts(timeout, connect_timeout)
    if junit_path:
        check_output_path(Path(junit_path), "--junit")
    ssh = SshOptions.from_env(connect_timeout, identity, known_hosts, python)
    if isinstance(dev, str):
        report = validate_labgrid(bundle_path, dev, fleet, timeout, ssh, python, target, verify_key)
    else:
        report = run_validate(bundle_path, dev, timeout, ssh, python, target, verify_key, build_dir)
    if junit_path:
        write_bytes_atomic(Path(junit_path), report.to_junit(), "--junit")
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.to_text())
    if not report.passed:
        failed = [c.name for c in report.checks if not c.passed]
        raise CheckFailed(f"validate failed on {dev}: {', '.join(failed)}")
