"""labgrid places as devices: `--device labgrid://PLACE` or `labgrid://?tags=k=v,...`.

labgrid (PyPI `labgrid`, the `fleet` extra) does the lab side: a gRPC coordinator knows the
places (named groups of resources, with tags), exporters publish each board's resources, and
reservations plus acquire/release make sure two jobs never share a board. edgeconv is only a
client of it:

1. a session with the coordinator (`--coordinator HOST:PORT`, else $LG_COORDINATOR);
2. a reservation whose filter is `name=PLACE` (labgrid matches a place's name like a tag) or
   the given tags; the coordinator's scheduler allocates the first free matching place, in
   priority and age order, so a job that asks for a busy place queues behind the holder and
   gets it as soon as it is released (polled every POLL_S); `--wait` bounds the queueing;
3. AcquirePlace on the allocated place, then its `NetworkService` resource (address, port,
   username) becomes an `ssh://` device and the bundle runs through the very same ssh/scp path
   as `--device ssh://...` (edgeconv.device.validate.SshDevice: BatchMode, timeouts, fresh
   mktemp folder, the installed runner). labgrid's own SSHDriver works too (probed: run_check
   and put over SFTP), but it would be a second copy of that path with other timeouts;
4. ReleasePlace and CancelReservation in a `finally`, so the place is released after a pass, a
   failed verdict, a timeout, Ctrl-C, SIGTERM/SIGHUP (the CLI turns them into KeyboardInterrupt)
   and a crash of the runner. Only SIGKILL of this process leaves the place acquired (labgrid
   ties an acquisition to the user, not the connection): `labgrid-client -p PLACE release`.
   A signal the launcher set to ignored stays ignored, as the shell intends (a script's
   `edgeconv ... &` ignores SIGINT, `nohup` SIGHUP): stop such a job with SIGTERM.

Infrastructure trouble (coordinator unreachable, no place within --wait, the board's ssh gone)
raises DeviceUnavailable (exit 75), kept apart from a failed verdict (exit 1).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from edgeconv.core.errors import DeviceUnavailable, EdgeconvError, InputError, MissingRuntime, UsageError
from edgeconv.device.validate import Device, ValidationReport

SCHEME = "labgrid://"
DEFAULT_WAIT = 60.0
MAX_WAIT = 7 * 24 * 3600.0
POLL_S = 0.2
RPC_TIMEOUT = 15.0
# Place names and tag values: labgrid's own TAG_VAL only checks the first character, so the
# spec is checked here (letters, digits, _ . -); tag keys follow labgrid's TAG_KEY.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_TAG_KEY = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
_TAG_VAL = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass(frozen=True)
class PlaceSpec:
    """What the job asks the coordinator for: one named place, or any free place with these tags."""

    place: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    def filters(self) -> dict[str, str]:
        return {"name": self.place} if self.place else dict(self.tags)

    def __str__(self) -> str:
        if self.place:
            return f"{SCHEME}{self.place}"
        return f"{SCHEME}?tags=" + ",".join(f"{k}={v}" for k, v in self.tags)


def is_labgrid(spec: str) -> bool:
    return spec.startswith(SCHEME)


def parse_labgrid(spec: str) -> PlaceSpec:
    usage = f"--device: expected labgrid://PLACE or labgrid://?tags=key=value,..., got {spec!r}"
    if not is_labgrid(spec):
        raise UsageError(usage)
    rest = spec[len(SCHEME) :]
    if not rest.startswith("?"):
        place = rest.rstrip("/")
        if not _NAME.match(place):
            raise UsageError(f"{usage} (place name {place!r}: letters, digits, _ . - only)")
        return PlaceSpec(place=place)
    query = parse_qsl(rest[1:], keep_blank_values=True, strict_parsing=False)
    if [k for k, _ in query] != ["tags"]:
        raise UsageError(f"{usage} (the only query parameter is tags=)")
    tags: dict[str, str] = {}
    for pair in query[0][1].split(","):
        key, sep, value = pair.partition("=")
        if not sep or not _TAG_KEY.match(key) or not _TAG_VAL.match(value):
            raise UsageError(
                f"{usage} (tag {pair!r}: expected key=value, key lower-case [a-z][a-z0-9_]+, value [A-Za-z0-9_.-]+)"
            )
        if key in tags:
            raise UsageError(f"{usage} (tag {key!r} given twice)")
        tags[key] = value
    return PlaceSpec(tags=tuple(sorted(tags.items())))


def coordinator_address(option: str | None) -> str:
    address = option or os.environ.get("LG_COORDINATOR") or ""
    if not address:
        raise UsageError("--coordinator: a labgrid device needs the coordinator's HOST:PORT (or set LG_COORDINATOR)")
    if not re.match(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$", address):
        raise UsageError(f"--coordinator: expected HOST[:PORT], got {address!r}")
    return address


def check_wait(wait: float) -> None:
    if not (isinstance(wait, (int, float)) and 0 <= wait <= MAX_WAIT):
        raise UsageError(f"--wait: expected 0 to {MAX_WAIT:g} seconds, got {wait}")


@dataclass(frozen=True)
class Lease:
    """An acquired place and the NetworkService the bundle runs on."""

    place: str
    exporter: str
    group: str
    resource: str  # exporter/group/NetworkService/name, labgrid's resource path
    address: str
    port: int
    username: str
    acquired_by: str
    coordinator: str
    waited_s: float
    acquired_at: float = 0.0  # time.time() when AcquirePlace returned
    tags: dict = field(default_factory=dict)

    def ssh_device(self) -> Device:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return Device("ssh", self.username, host, self.port)

    def to_json(self) -> dict:
        return {
            "coordinator": self.coordinator,
            "place": self.place,
            "tags": self.tags,
            "exporter": self.exporter,
            "group": self.group,
            "resource": self.resource,
            "ssh": str(self.ssh_device()),
            "acquired_by": self.acquired_by,
            "waited_s": round(self.waited_s, 3),
            "acquired_at": round(self.acquired_at, 3),
        }

    def describe(self) -> str:
        return f"labgrid place {self.place} ({self.resource} on exporter {self.exporter}, {self.ssh_device()})"


def _import_labgrid():
    try:
        import grpc  # type: ignore[import-untyped]
        from labgrid.remote.client import start_session
        from labgrid.remote.common import Reservation, ReservationState
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb
    except ImportError:
        raise MissingRuntime(
            "device labgrid://: the labgrid package is not installed; install it with: pip install 'edgeconv[fleet]'"
        ) from None
    return grpc, start_session, Reservation, ReservationState, pb


def _details(err: BaseException) -> str:
    details = getattr(err, "details", None)
    text = details() if callable(details) else str(err)
    return " ".join(str(text).split())[:200]


@contextmanager
def acquired_place(
    spec: PlaceSpec, coordinator: str, wait: float = DEFAULT_WAIT, log=None, record: dict | None = None
) -> Iterator[Lease]:
    """Reserve and acquire a place matching `spec` (waiting up to `wait` s), yield its Lease,
    release it and cancel the reservation whatever happens inside. `record["releasing_at"]` gets
    the time.time() just before ReleasePlace (no other job can hold the place before it)."""
    import asyncio
    import logging

    grpc, start_session, Reservation, ReservationState, pb = _import_labgrid()
    # labgrid logs a broken stream at ERROR with a traceback; the one-line error says it
    logging.getLogger().setLevel(logging.CRITICAL)
    asked = time.monotonic()
    try:
        session = start_session(coordinator)
    except Exception as err:  # ServerError, grpc errors: the coordinator is not there
        raise DeviceUnavailable(
            f"device {spec}: cannot reach the labgrid coordinator at {coordinator} ({_details(err)})"
        ) from None
    loop = session.loop

    def rpc(call, request):
        return loop.run_until_complete(asyncio.wait_for(call(request), RPC_TIMEOUT))

    token: str | None = None
    acquired: str | None = None
    acquired_at = 0.0
    try:
        filters = spec.filters()
        if spec.place and spec.place not in session.places:
            known = ", ".join(sorted(session.places)) or "none"
            raise InputError(
                f"device {spec}: the coordinator at {coordinator} has no place {spec.place!r} (places: {known})"
            )
        if not spec.place and not any(
            all(p.tags.get(k) == v for k, v in filters.items()) for p in session.places.values()
        ):
            raise InputError(f"device {spec}: no place at {coordinator} has the tags {filters}")
        try:
            response = rpc(
                session.stub.CreateReservation,
                pb.CreateReservationRequest(filters={"main": pb.Reservation.Filter(filter=filters)}, prio=0),
            )
        except grpc.aio.AioRpcError as err:
            raise DeviceUnavailable(
                f"device {spec}: the coordinator refused the reservation ({_details(err)})"
            ) from None
        token = Reservation.from_pb2(response.reservation).token
        deadline = asked + wait
        said_waiting = False
        while True:
            res = Reservation.from_pb2(
                rpc(session.stub.PollReservation, pb.PollReservationRequest(token=token)).reservation
            )
            name = None
            if res.state in (ReservationState.allocated, ReservationState.acquired):
                name = (res.allocations.get("main") or [None])[0]
            elif res.state is not ReservationState.waiting:
                raise DeviceUnavailable(f"device {spec}: reservation {token} became {res.state.name}")
            if name is not None:
                try:
                    rpc(session.stub.AcquirePlace, pb.AcquirePlaceRequest(placename=name))
                    acquired = name
                    acquired_at = time.time()
                    break
                except grpc.aio.AioRpcError as err:  # taken without a reservation in between: queue on
                    if log:
                        log(f"labgrid: place {name} allocated but not acquired ({_details(err)}); waiting")
            if time.monotonic() >= deadline:
                loop.run_until_complete(session.sync_with_coordinator())
                held = sorted(
                    f"{p.name} by {p.acquired}"
                    for p in session.places.values()
                    if p.acquired and (not spec.place or p.name == spec.place)
                )
                raise DeviceUnavailable(
                    f"device {spec}: no place acquired within {wait:g} s (--wait)"
                    + (f"; held: {', '.join(held)}" if held else "")
                )
            if log and not said_waiting:
                log(f"labgrid: waiting up to {wait:g} s for {spec}")
                said_waiting = True
            time.sleep(POLL_S)
        waited = time.monotonic() - asked
        loop.run_until_complete(session.sync_with_coordinator())
        place = session.places[acquired]
        found = []
        for path in place.acquired_resources:
            exporter, group, cls, rname = path
            if cls != "NetworkService":
                continue
            try:
                entry = session.resources[exporter][group][rname]
            except KeyError:
                raise DeviceUnavailable(
                    f"device {spec}: place {acquired} has an orphaned resource {'/'.join(path)} (exporter gone?)"
                ) from None
            found.append(("/".join(path), exporter, group, entry))
        if not found:
            raise InputError(
                f"device {spec}: place {acquired} has no NetworkService resource "
                f"(it has: {', '.join('/'.join(p) for p in place.acquired_resources) or 'nothing'}); "
                "add one with labgrid-client -p PLACE add-match EXPORTER/GROUP/NetworkService"
            )
        path, exporter, group, entry = found[0]
        if not entry.avail:
            raise DeviceUnavailable(f"device {spec}: resource {path} of place {acquired} is not available")
        params = entry.args
        lease = Lease(
            place=acquired,
            exporter=exporter,
            group=group,
            resource=path,
            address=str(params["address"]),
            port=int(params.get("port") or 22),
            username=str(params["username"]),
            acquired_by=str(place.acquired),
            coordinator=coordinator,
            waited_s=waited,
            acquired_at=acquired_at,
            tags=dict(place.tags),
        )
        if log:
            log(f"labgrid: acquired {lease.describe()} after {waited:.2f} s")
        yield lease
    finally:
        _release(session, rpc, pb, acquired, token, log, record)


def _release(session, rpc, pb, acquired, token, log, record) -> None:
    """Cancel and release; a second Ctrl-C while releasing is ignored (the release is short)."""
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        if token is not None:
            # the reservation first: labgrid 26's coordinator schedules waiting reservations on
            # Create/Cancel/Acquire/Release and every 15 s, and a place whose (stale) reservation
            # is only cleared at the end of a pass is not handed on in that pass; cancelling
            # first clears it, so ReleasePlace hands the place to the next job at once
            with contextlib.suppress(Exception):  # an unpolled reservation expires on its own (60 s)
                rpc(session.stub.CancelReservation, pb.CancelReservationRequest(token=token))
        if acquired is not None:
            if record is not None:
                record["releasing_at"] = time.time()
            try:
                rpc(session.stub.ReleasePlace, pb.ReleasePlaceRequest(placename=acquired))
                if log:
                    log(f"labgrid: released place {acquired}")
            except Exception as err:
                print(
                    f"edgeconv: warning: labgrid place {acquired} NOT released ({_details(err)}); "
                    f"release it with: labgrid-client -p {acquired} release",
                    file=sys.stderr,
                )
        try:
            session.loop.run_until_complete(session.stop())
            session.loop.run_until_complete(session.close())
        except Exception:
            pass
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGINT, previous)


@dataclass
class LabgridReport(ValidationReport):
    """A validation report that also names the place, exporter and resource it ran on."""

    lease: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        data = super().to_json()
        data["labgrid"] = self.lease
        return data

    def to_text(self) -> str:
        lines = super().to_text().splitlines()
        lease = self.lease
        lines.insert(
            1,
            f"  labgrid: place {lease['place']} via {lease['coordinator']}, resource {lease['resource']} "
            f"(exporter {lease['exporter']}, {lease['ssh']}), acquired by {lease['acquired_by']} "
            f"after {lease['waited_s']:.2f} s, released",
        )
        return "\n".join(lines)


def validate_on_place(
    bundle_path: str | Path,
    spec: PlaceSpec | str,
    coordinator: str | None = None,
    wait: float = DEFAULT_WAIT,
    log=None,
    **validate_kwargs,
) -> LabgridReport:
    """Acquire the place, run `validate` on its NetworkService over ssh, release the place."""
    from dataclasses import fields

    from edgeconv.device.validate import validate

    if isinstance(spec, str):
        spec = parse_labgrid(spec)
    check_wait(wait)
    address = coordinator_address(coordinator)
    record: dict = {}
    with acquired_place(spec, address, wait, log, record) as lease:
        try:
            report = validate(bundle_path, lease.ssh_device(), **validate_kwargs)
        except EdgeconvError as err:
            # the same error class (so the same exit code), naming the place and resource
            raise _renamed(err, f"{lease.describe()}: {err}") from None
    values = {f.name: getattr(report, f.name) for f in fields(ValidationReport)}
    values["device"] = str(spec) if spec.place else f"{spec} -> {SCHEME}{lease.place}"
    # released_at: time.time() just before ReleasePlace (the next job may acquire from then on)
    return LabgridReport(**values, lease={**lease.to_json(), "released_at": round(record["releasing_at"], 3)})


def _renamed(err: EdgeconvError, message: str) -> EdgeconvError:
    new = type(err).__new__(type(err))
    Exception.__init__(new, message)
    new.__dict__.update(err.__dict__)
    return new
