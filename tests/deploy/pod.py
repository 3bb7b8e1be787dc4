#!/usr/bin/env python3
"""The manifest is the truth: runs the pod that the rendered manifest describes,
as close to a kubelet as one machine without a cluster or a container engine
gets, and fails when the manifest and the binaries disagree.

    unshare --net --mount --propagation private \\
      python3 tests/deploy/pod.py --manifest rendered.yaml --bridge BIN --app BIN

Needs root, inside its own network and mount namespaces (run.sh starts it so).
Reads the Deployment, its Service, NetworkPolicy and PodDisruptionBudget, and
the final stage of deploy/Dockerfile and clients/go/Dockerfile (ENTRYPOINT, CMD,
USER). Then:

1. image: the bridge alone in an empty root (only the binary and /etc/hosts),
   as the Dockerfile's USER, resolving `localhost` through /etc/hosts: a
   signed delivery gets the app's reply.
2. pod: each container in its own root holding only its image's binary (read-only
   if readOnlyRootFilesystem), as the securityContext's uid/gid/fsGroup, with no
   capabilities and no_new_privs, its argv (command/args over
   ENTRYPOINT/CMD) and exactly its env; both share one network namespace
   (the pod's) with loopback and a pod IP; the Secret is mounted where
   volumeMounts says, laid out as the kubelet does (..data symlink swap).
   The sidecar starts first and must pass its startupProbe before the app
   starts; then every probe path answers 200 on its port on the pod IP; the
   Service's targetPort receives every conformance vector; the app is not
   reachable on the pod IP.
3. rotation: the Secret changes by an atomic ..data swap; the new secret is
   accepted within the reload interval, the old one until it is removed, and
   never after.
4. shutdown, in the kubelet's order: the app's preStop, SIGTERM to the app,
   then (once it exited) SIGTERM to the sidecar; checks what Platica gets in
   each phase and that the whole sequence fits terminationGracePeriodSeconds.

Prints a line per check and the measured timeline; exits 1 on the first failure.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import platica

POD_IP = "10.244.0.10"  # an address on the pod's loopback, standing in for its IP
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
LIBC = ctypes.CDLL(None, use_errno=True)

# Bridge defaults the manifest may leave unset (bridge/src/config.rs).
DEFAULTS = {
    "FLOWS_BRIDGE_LISTEN": "0.0.0.0:8080",
    "FLOWS_BRIDGE_ADMIN_LISTEN": "0.0.0.0:9090",
    "FLOWS_BRIDGE_PATH": "/",
    "FLOWS_BRIDGE_SECRET_RELOAD_INTERVAL": "5s",
    "FLOWS_BRIDGE_SHUTDOWN_DELAY": "0s",
    "FLOWS_BRIDGE_SHUTDOWN_GRACE": "10s",
    "FLOWS_BRIDGE_BUDGET": "600ms",
}


class Failed(Exception):
    pass


def ok(message: str) -> None:
    print(f"ok   {message}", flush=True)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)


def seconds(value: str) -> float:
    """The bridge's duration syntax, as far as manifests use it: 600ms, 5s, 1m, 0."""
    value = value.strip()
    for unit, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if value.endswith(unit) and value[: -len(unit)].replace(".", "", 1).isdigit():
            return float(value[: -len(unit)]) * factor
    if value == "0":
        return 0.0
    raise Failed(f"cannot read the duration {value!r}")


# ---- reading the manifest and the Dockerfiles ---------------------------------


@dataclass
class Image:
    entrypoint: list[str]
    cmd: list[str]
    user: tuple[int, int] | None


def read_image(dockerfile: Path) -> Image:
    """ENTRYPOINT, CMD and USER of the Dockerfile's final stage (exec form only)."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    user = None
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            entrypoint, cmd, user = [], [], None
        elif word in ("ENTRYPOINT", "CMD"):
            try:
                value = json.loads(rest)
            except ValueError:
                raise Failed(f"{dockerfile}: {word} must be in exec (JSON) form: {line}") from None
            if word == "ENTRYPOINT":
                entrypoint, cmd = value, []  # a new ENTRYPOINT resets CMD
            else:
                cmd = value
        elif word == "USER":
            uid, _, gid = rest.strip().partition(":")
            expect(uid.isdigit() and (not gid or gid.isdigit()), f"{dockerfile}: USER must be numeric: {line}")
            user = (int(uid), int(gid or uid))
    expect(bool(entrypoint), f"{dockerfile}: the final stage has no ENTRYPOINT")
    return Image(entrypoint, cmd, user)


@dataclass
class Container:
    name: str
    spec: dict
    argv: list[str]
    env: dict[str, str]
    uid: int
    gid: int
    groups: list[int]
    read_only_root: bool
    ports: dict[str, int] = field(default_factory=dict)


def argv_of(spec: dict, image: Image) -> list[str]:
    """Kubernetes' rule: command replaces ENTRYPOINT (and drops CMD); args replace CMD."""
    command = spec.get("command")
    args = spec.get("args")
    if command is not None:
        return list(command) + list(args or [])
    return image.entrypoint + (list(args) if args is not None else image.cmd)


def container_of(spec: dict, pod: dict, image: Image) -> Container:
    pod_sc = pod.get("securityContext") or {}
    sc = spec.get("securityContext") or {}
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    if uid is None and image.user:
        uid = image.user[0]
    if gid is None and image.user:
        gid = image.user[1]
    expect(uid is not None and uid != 0, f"{spec['name']}: no non-root runAsUser (manifest or image USER)")
    expect(gid is not None, f"{spec['name']}: no runAsGroup")
    groups = [g for g in [pod_sc.get("fsGroup")] + list(pod_sc.get("supplementalGroups") or []) if g is not None]
    env = {}
    for item in spec.get("env") or []:
        expect("value" in item, f"{spec['name']}: env {item['name']} is not a literal value; this test cannot run it")
        env[item["name"]] = str(item["value"])
    caps = (sc.get("capabilities") or {}).get("drop") or []
    expect("ALL" in caps, f"{spec['name']}: capabilities.drop must include ALL")
    expect(sc.get("allowPrivilegeEscalation") is False, f"{spec['name']}: allowPrivilegeEscalation must be false")
    return Container(
        name=spec["name"],
        spec=spec,
        argv=argv_of(spec, image),
        env=env,
        uid=int(uid),
        gid=int(gid),
        groups=groups,
        read_only_root=bool(sc.get("readOnlyRootFilesystem")),
        ports={p.get("name", str(p["containerPort"])): int(p["containerPort"]) for p in spec.get("ports") or []},
    )


def selects(selector: dict, labels: dict) -> bool:
    match = selector.get("matchLabels") or {}
    expect(not selector.get("matchExpressions"), "matchExpressions are not supported by this test")
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


# ---- running a container -----------------------------------------------------


def prctl(option: int, arg: int) -> None:
    if LIBC.prctl(option, arg, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}, {arg})")


def last_cap() -> int:
    return int(Path("/proc/sys/kernel/cap_last_cap").read_text())


def run_in_root(root: Path, container: Container, log: Path, extra_env: dict | None = None) -> subprocess.Popen:
    """Starts argv in `root` as the container's uid/gid/groups, with no
    capabilities, no_new_privs and exactly the container's environment."""
    caps = last_cap()

    def enter() -> None:
        os.chroot(root)
        os.chdir("/")
        for cap in range(caps + 1):
            prctl(PR_CAPBSET_DROP, cap)
        os.setgroups(container.groups)
        os.setgid(container.gid)
        os.setuid(container.uid)  # from root to a non-zero uid: every capability goes
        prctl(PR_SET_NO_NEW_PRIVS, 1)

    env = {"HOSTNAME": "flows-0"}
    env.update(container.env)
    env.update(extra_env or {})
    return subprocess.Popen(
        container.argv,
        executable=container.argv[0],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        preexec_fn=enter,  # noqa: PLW1509 -- pod.py starts no threads
        close_fds=True,
    )


def image_root(
    work: Path, name: str, binary: Path, entrypoint: str, read_only: bool, mountpoints: tuple[str, ...] = ()
) -> Path:
    """A root holding the image's one binary at its ENTRYPOINT, and /etc/hosts
    (the kubelet writes one into every container), and empty mount points."""
    root = work / name
    (root / "etc").mkdir(parents=True)
    for point in mountpoints:
        (root / point.lstrip("/")).mkdir(parents=True, exist_ok=True)
    target = root / entrypoint.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, target)
    os.chmod(target, 0o755)
    (root / "etc" / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")
    # Bind the root onto itself so it can be made read-only (and mounted into).
    subprocess.run(["mount", "--bind", str(root), str(root)], check=True)
    if read_only:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(root)], check=True)
    return root


class SecretVolume:
    """A Secret volume as the kubelet's atomic writer keeps it: a tmpfs with
    a timestamped directory, ..data -> it, and each key a symlink ..data/key."""

    def __init__(self, path: Path, mode: int, gid: int | None):
        self.path, self.mode, self.gid = path, mode, gid
        self.generation = 0
        path.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=1777", "tmpfs", str(path)], check=True)

    def write(self, data: dict[str, bytes]) -> None:
        self.generation += 1
        stamp = f"..2026_01_01_00_00_{self.generation:02d}.{os.getpid()}"
        new = self.path / stamp
        new.mkdir(mode=0o755)
        for key, value in data.items():
            (new / key).write_bytes(value)
            os.chown(new / key, 0, self.gid if self.gid is not None else 0)
            os.chmod(new / key, self.mode)
        tmp = self.path / "..data_tmp"
        os.symlink(stamp, tmp)
        old = os.readlink(self.path / "..data") if (self.path / "..data").is_symlink() else None
        os.rename(tmp, self.path / "..data")  # the atomic swap
        for key in data:
            link = self.path / key
            if not link.is_symlink():
                os.symlink(f"..data/{key}", link)
        for entry in self.path.iterdir():
            if not entry.name.startswith(".") and entry.name not in data:
                entry.unlink()  # a removed key
        if old:
            shutil.rmtree(self.path / old)


def stop(proc: subprocess.Popen | None, timeout: float = 15.0) -> int | None:
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def tail(log: Path, lines: int = 8) -> str:
    try:
        return "\n".join(line[:300] for line in log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---- the checks ----------------------------------------------------------------


class Pod:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args, self.work = args, work
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        docs = [d for d in yaml.safe_load_all(args.manifest.read_text()) if d]
        deployments = [d for d in docs if d["kind"] == "Deployment"]
        expect(len(deployments) == 1, f"expected one Deployment, found {len(deployments)}")
        self.deployment = deployments[0]
        self.template = self.deployment["spec"]["template"]
        self.pod = self.template["spec"]
        self.labels = self.template["metadata"].get("labels") or {}
        self.services = [d for d in docs if d["kind"] == "Service"]
        self.policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
        self.budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
        self.bridge_image = read_image(args.dockerfile)
        self.app_image = read_image(args.app_dockerfile)

    # -- static agreement between the objects -------------------------------------

    def check_objects(self) -> None:
        sidecars = [c for c in self.pod.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
        bridges = [c for c in sidecars if c["name"] == "flows-bridge"]
        expect(len(bridges) == 1, "no native sidecar named flows-bridge (initContainers, restartPolicy: Always)")
        expect(len(self.pod["containers"]) == 1, "expected exactly one app container")
        self.bridge = container_of(bridges[0], self.pod, self.bridge_image)
        self.app = container_of(self.pod["containers"][0], self.pod, self.app_image)
        ok(f"native sidecar flows-bridge, argv {shlex.join(self.bridge.argv)}, uid {self.bridge.uid}")
        ok(f"app {self.app.name}, argv {shlex.join(self.app.argv)}, uid {self.app.uid}")

        env = dict(DEFAULTS)
        env.update(self.bridge.env)
        self.env = env
        self.listen_port = int(env["FLOWS_BRIDGE_LISTEN"].rsplit(":", 1)[1])
        self.admin_port = int(env["FLOWS_BRIDGE_ADMIN_LISTEN"].rsplit(":", 1)[1])
        self.path = env["FLOWS_BRIDGE_PATH"]
        declared = set(self.bridge.ports.values())
        expect(
            {self.listen_port, self.admin_port} <= declared,
            f"containerPorts {sorted(declared)} do not declare FLOWS_BRIDGE_LISTEN {self.listen_port} "
            f"and FLOWS_BRIDGE_ADMIN_LISTEN {self.admin_port}",
        )
        ok(f"containerPorts {sorted(declared)} = FLOWS_BRIDGE_LISTEN / FLOWS_BRIDGE_ADMIN_LISTEN")

        # Probes: HTTP GETs on numeric ports (or the container's own port names).
        self.probes = {}
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = self.bridge.spec.get(kind)
            expect(probe is not None and "httpGet" in probe, f"flows-bridge has no {kind} with httpGet")
            port = probe["httpGet"]["port"]
            port = self.bridge.ports[port] if isinstance(port, str) else int(port)
            self.probes[kind] = (probe["httpGet"]["path"], port, probe)
        ok("probes: " + ", ".join(f"{k} GET {p}:{n}" for k, (p, n, _) in self.probes.items()))

        # Service: selects the pod, exposes only the webhook port, by number.
        services = [s for s in self.services if selects({"matchLabels": s["spec"].get("selector")}, self.labels)]
        expect(len(services) == 1, f"expected one Service selecting the pod, found {len(services)}")
        ports = services[0]["spec"]["ports"]
        expect(len(ports) == 1, f"the Service exposes {len(ports)} ports; only the webhook port may be exposed")
        target = ports[0].get("targetPort", ports[0]["port"])
        expect(
            isinstance(target, int),
            f"Service targetPort {target!r} is a name: names of a native sidecar's ports do not resolve "
            "before Kubernetes 1.32-1.33 (kubernetes#127958); use the number",
        )
        expect(
            target == self.listen_port, f"Service targetPort {target} is not FLOWS_BRIDGE_LISTEN's {self.listen_port}"
        )
        self.service_target = target
        ok(f"Service {services[0]['metadata']['name']}: port {ports[0]['port']} -> {target} (webhook), nothing else")

        # NetworkPolicy: selects the pod, admits the webhook and admin ports by number.
        policies = [p for p in self.policies if selects(p["spec"]["podSelector"], self.labels)]
        expect(len(policies) == 1, f"expected one NetworkPolicy selecting the pod, found {len(policies)}")
        admitted = set()
        for rule in policies[0]["spec"].get("ingress") or []:
            for port in rule.get("ports") or []:
                expect(isinstance(port.get("port"), int), f"NetworkPolicy port {port.get('port')!r} must be a number")
                admitted.add(port["port"])
        expect(self.listen_port in admitted, f"the NetworkPolicy does not admit the webhook port {self.listen_port}")
        expect(self.admin_port in admitted, f"the NetworkPolicy does not admit the admin port {self.admin_port}")
        ok(f"NetworkPolicy {policies[0]['metadata']['name']} admits {sorted(admitted)}")

        budgets = [b for b in self.budgets if selects(b["spec"]["selector"], self.labels)]
        expect(len(budgets) == 1, f"expected one PodDisruptionBudget selecting the pod, found {len(budgets)}")
        ok(f"PodDisruptionBudget {budgets[0]['metadata']['name']} selects the pod")

        # The Secret: mounted as a directory (no subPath), read-only, at FLOWS_BRIDGE_SECRET_FILE.
        secret_file = env.get("FLOWS_BRIDGE_SECRET_FILE")
        expect(bool(secret_file), "FLOWS_BRIDGE_SECRET_FILE is not set: the secret must come from a mounted Secret")
        expect("FLOWS_BRIDGE_SECRET" not in env, "FLOWS_BRIDGE_SECRET is set in the manifest: mount the Secret instead")
        volumes = {v["name"]: v for v in self.pod.get("volumes") or []}
        mounts = [
            m
            for m in self.bridge.spec.get("volumeMounts") or []
            if "secret" in volumes.get(m["name"], {}) and secret_file.startswith(m["mountPath"])
        ]
        expect(len(mounts) == 1, f"no Secret volume is mounted at {secret_file}")
        mount = mounts[0]
        expect("subPath" not in mount, "the Secret is mounted with subPath: subPath mounts never see an update")
        expect(mount.get("readOnly") is True, "the Secret mount is not readOnly")
        self.secret_mount = mount["mountPath"]
        self.secret_volume = volumes[mount["name"]]["secret"]
        expect(not self.secret_volume.get("items"), "the test expects the whole Secret (no items)")
        ok(
            f"Secret {self.secret_volume['secretName']} mounted read-only at {self.secret_mount} (directory, no subPath)"
        )

        # Termination: every declared wait fits the grace period.
        grace = int(self.pod.get("terminationGracePeriodSeconds", 30))
        pre_stop = ((self.app.spec.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
        app_grace = 0.0
        for arg in self.app.argv:
            if arg.startswith("--grace="):
                app_grace = seconds(arg.split("=", 1)[1])
        delay = seconds(env["FLOWS_BRIDGE_SHUTDOWN_DELAY"])
        drain = seconds(env["FLOWS_BRIDGE_SHUTDOWN_GRACE"])
        worst = pre_stop + app_grace + delay + drain
        expect(delay > 0, "FLOWS_BRIDGE_SHUTDOWN_DELAY is 0: the listener would close before endpoints are updated")
        expect(
            worst + 2 <= grace,
            f"terminationGracePeriodSeconds {grace} < preStop {pre_stop} + app grace {app_grace:g} + "
            f"SHUTDOWN_DELAY {delay:g} + SHUTDOWN_GRACE {drain:g} + 2 s of slack",
        )
        self.grace, self.pre_stop = grace, pre_stop
        ok(
            f"terminationGracePeriodSeconds {grace} >= preStop {pre_stop} + app grace {app_grace:g} + "
            f"delay {delay:g} + drain {drain:g} (= {worst:g}) + 2"
        )

    # -- running ----------------------------------------------------------------------

    def start(self, root: Path, container: Container, extra_env: dict | None = None) -> subprocess.Popen:
        log = self.work / f"{root.name}-{len(self.logs)}.log"
        proc = run_in_root(root, container, log, extra_env)
        self.procs.append(proc)
        self.logs.append(log)
        proc.log = log  # type: ignore[attr-defined]
        return proc

    def get(self, port: int, path: str, host: str = POD_IP, timeout: float = 1.0) -> tuple[int, bytes]:
        status, body, _ = platica.request(host, port, "GET", path, timeout=timeout)
        return status, body

    def deliver(self, secret: bytes, name: str = "seed_init") -> tuple[int, object, float]:
        vector = platica.case(name)
        try:
            return platica.post_delivery(POD_IP, self.service_target, self.path, platica.delivery_for(vector), secret)
        except OSError as error:
            raise Failed(
                f"POST {POD_IP}:{self.service_target}{self.path} (the Service's targetPort): {error}"
            ) from None

    def check_image(self) -> None:
        """The bridge alone in an empty root, as the image's USER, default settings."""
        root = image_root(self.work, "image-root", self.args.bridge, self.bridge_image.entrypoint[0], read_only=True)
        app_root = image_root(self.work, "image-app-root", self.args.app, self.app_image.entrypoint[0], read_only=True)
        entries = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        expect(entries == ["etc", "etc/hosts", self.bridge_image.entrypoint[0].lstrip("/")], f"root holds {entries}")
        user = self.bridge_image.user
        expect(user is not None and user[0] == 65532, f"deploy/Dockerfile USER is {user}, not 65532")
        app = Container("app", {}, self.app_image.entrypoint + self.app_image.cmd, {}, 65532, 65532, [], True)
        bridge = Container(
            "flows-bridge", {}, self.bridge_image.entrypoint + self.bridge_image.cmd, {}, user[0], user[1], [], True
        )
        secret = os.urandom(32).hex().encode()
        app_proc = self.start(app_root, app)
        # Everything else at its default: 0.0.0.0:8080, admin 0.0.0.0:9090.
        proc = self.start(
            root, bridge, {"FLOWS_BRIDGE_SECRET": secret.decode(), "FLOWS_BRIDGE_UPSTREAM": "http://localhost:50051"}
        )
        try:
            platica.wait_until(
                "/readyz in the empty root",
                lambda: self.get(9090, "/readyz")[0] == 200,
                timeout=15,
                alive=lambda: proc.poll() is None and app_proc.poll() is None,
            )
            vector = platica.case("seed_init")
            problem = platica.send_case(POD_IP, 8080, "/", vector, secret)
            expect(problem is None, f"empty root: {problem}")
            ok(
                f"image: {shlex.join(bridge.argv)} in a root holding only {entries[-1]} and etc/hosts, "
                f"uid {user[0]}, upstream http://localhost:50051 via /etc/hosts: seed_init got its reply"
            )
        finally:
            expect(stop(proc) == 0, f"the bridge did not exit 0 on SIGTERM:\n{tail(proc.log)}")
            stop(app_proc)
        for r in (root, app_root):
            subprocess.run(["umount", "-l", str(r)], check=True)

    def run_pod(self) -> None:
        bridge_root = image_root(
            self.work,
            "bridge-root",
            self.args.bridge,
            self.bridge.argv[0],
            read_only=self.bridge.read_only_root,
            mountpoints=(self.secret_mount,),
        )
        app_root = image_root(self.work, "app-root", self.args.app, self.app.argv[0], read_only=self.app.read_only_root)
        mode = self.secret_volume.get("defaultMode", 0o644)
        fs_group = (self.pod.get("securityContext") or {}).get("fsGroup")
        volume = SecretVolume(self.work / "kubelet" / "secret", mode, fs_group)
        old, new = os.urandom(32).hex().encode(), os.urandom(32).hex().encode()
        volume.write({"current": old + b"\n"})
        # The container sees the volume at its mountPath, read-only (a bind mount of the kubelet's tmpfs).
        mountpoint = bridge_root / self.secret_mount.lstrip("/")
        subprocess.run(["mount", "--bind", str(volume.path), str(mountpoint)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mountpoint)], check=True)

        timeline: list[tuple[float, str]] = []
        t0 = time.monotonic()

        def mark(what: str) -> None:
            timeline.append((time.monotonic() - t0, what))

        # Kubelet: sidecar first; the app waits for its startupProbe.
        bridge = self.start(bridge_root, self.bridge)
        mark("sidecar started")
        path, port, probe = self.probes["startupProbe"]
        limit = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
        platica.wait_until(
            f"startupProbe GET {path}:{port}",
            lambda: self.get(port, path)[0] == 200,
            timeout=limit,
            alive=lambda: bridge.poll() is None,
        )
        mark(f"startupProbe {path} 200")
        ok(f"startupProbe GET {POD_IP}:{port}{path}: 200 after {timeline[-1][0]:.2f}s (limit {limit}s)")
        path, port, _ = self.probes["readinessProbe"]
        status, body = self.get(port, path)
        expect(status == 503, f"readiness before the app started: {status} {body!r}, expected 503")
        status, reply, took = self.deliver(old)
        expect(
            status == 200
            and reply == json.loads(self.env.get("FLOWS_BRIDGE_FALLBACK", '{"data":{"acknowledged":true}}')),
            f"before the app started: {status} {reply!r}",
        )
        ok(f"before the app starts: {path} 503, a delivery gets the fallback in {took * 1000:.0f} ms")

        app = self.start(app_root, self.app)
        mark("app started")
        platica.wait_until(
            f"readinessProbe GET {path}:{port}",
            lambda: self.get(port, path)[0] == 200,
            timeout=15,
            alive=lambda: bridge.poll() is None and app.poll() is None,
        )
        mark(f"readinessProbe {path} 200")
        for kind, (p, n, _) in self.probes.items():
            status, body = self.get(n, p)
            expect(status == 200, f"{kind} GET {p}:{n}: {status} {body!r}")
        ok(f"all probes 200 on the pod IP: {', '.join(f'{p}:{n}' for p, n, _ in self.probes.values())}")
        status, body = self.get(self.admin_port, "/metrics")
        expect(status == 200 and b"flows_bridge_secrets 1" in body, "/metrics does not count one secret")
        ok(f"GET {POD_IP}:{self.admin_port}/metrics: 200, flows_bridge_secrets 1")
        upstream_port = int(self.env.get("FLOWS_BRIDGE_UPSTREAM", "http://127.0.0.1:50051").rsplit(":", 1)[1])
        try:
            socket.create_connection((POD_IP, upstream_port), timeout=0.5).close()
            raise Failed(
                f"the app accepts connections on the pod IP {POD_IP}:{upstream_port}: it must listen on loopback only"
            )
        except ConnectionRefusedError:
            pass
        ok(f"the app is not reachable on the pod IP ({POD_IP}:{upstream_port} refused)")

        try:
            failures = [
                f
                for f in (platica.send_case(POD_IP, self.service_target, self.path, v, old) for v in platica.cases())
                if f
            ]
        except OSError as error:
            raise Failed(
                f"POST {POD_IP}:{self.service_target}{self.path} (the Service's targetPort): {error}"
            ) from None
        expect(not failures, "vectors through the Service's targetPort:\n  " + "\n  ".join(failures))
        ok(
            f"{len(platica.cases())} conformance vectors through {POD_IP}:{self.service_target}{self.path}: all as expected"
        )

        # -- rotation, by the kubelet's atomic swap -------------------------------------
        interval = seconds(self.env["FLOWS_BRIDGE_SECRET_RELOAD_INTERVAL"])
        started = time.monotonic()
        volume.write({"current": new + b"\n", "previous": old + b"\n"})
        platica.wait_until("the new secret", lambda: self.deliver(new)[0] == 200, timeout=interval * 3, interval=0.2)
        took = time.monotonic() - started
        expect(self.deliver(old)[0] == 200, "the old secret was refused while still listed")
        ok(
            f"rotation: new secret accepted {took:.1f}s after the swap (reload interval {interval:g}s); old one still accepted"
        )
        started = time.monotonic()
        volume.write({"current": new + b"\n"})
        platica.wait_until(
            "the old secret refused", lambda: self.deliver(old)[0] == 401, timeout=interval * 3, interval=0.2
        )
        took = time.monotonic() - started
        status, reply, _ = self.deliver(old)
        expect(status == 401 and reply.get("error") == "signature_mismatch", f"old secret: {status} {reply!r}")
        expect(self.deliver(new)[0] == 200, "the new secret stopped working")
        ok(f"rotation: old secret refused (401 signature_mismatch) {took:.1f}s after its removal; new one accepted")

        # -- shutdown, in the kubelet's order ----------------------------------------------
        t0 = time.monotonic()
        timeline.clear()
        mark("pod deleted: endpoints start to go; app preStop sleep begins")
        deadline = t0 + self.pre_stop
        served = 0
        while time.monotonic() < deadline:
            status, reply, _ = self.deliver(new, "seed_screen_advance_full")
            expect(status == 200 and reply.get("screen") == "PAYMENT", f"during the app's preStop: {status} {reply!r}")
            served += 1
            time.sleep(0.25)
        mark(f"app preStop over ({served} deliveries answered by the app meanwhile)")
        app.send_signal(signal.SIGTERM)
        mark("SIGTERM to the app")
        code = app.wait(timeout=max(self.grace - (time.monotonic() - t0), 1))
        mark(f"app exited ({code})")
        expect(code == 0, f"the app exited {code}:\n{tail(app.log)}")
        # The app is gone; the kubelet now stops the sidecar. A delivery that
        # still arrives in between gets the fallback at once.
        status, reply, took = self.deliver(new)
        fallback = json.loads(self.env.get("FLOWS_BRIDGE_FALLBACK", '{"data":{"acknowledged":true}}'))
        expect(status == 200 and reply == fallback, f"after the app exited: {status} {reply!r}")
        expect(took < 0.2, f"the fallback took {took * 1000:.0f} ms; it must come at once")
        mark(f"delivery answered with the fallback in {took * 1000:.0f} ms (no app)")
        bridge.send_signal(signal.SIGTERM)
        mark("SIGTERM to the sidecar")
        path, port, _ = self.probes["readinessProbe"]
        platica.wait_until(
            f"{path} draining after SIGTERM",
            lambda: json.loads(self.get(port, path)[1]).get("draining") is True,
            timeout=1,
        )
        mark(f"{path} 503 (draining)")
        delay = seconds(self.env["FLOWS_BRIDGE_SHUTDOWN_DELAY"])
        time.sleep(min(1.0, delay / 2))
        status, reply, _ = self.deliver(new)
        expect(status == 200 and reply == fallback, f"during SHUTDOWN_DELAY the listener must still answer: {status}")
        mark("bridge draining: listener still open, fallback")
        platica.wait_until(
            "the listener closed",
            lambda: self._refused(),
            timeout=delay + 2,
            interval=0.05,
        )
        mark("bridge listener closed (connection refused)")
        code = bridge.wait(timeout=max(self.grace - (time.monotonic() - t0), 1))
        mark(f"sidecar exited ({code})")
        expect(code == 0, f"the bridge exited {code}:\n{tail(bridge.log)}")
        total = timeline[-1][0]
        expect(total <= self.grace, f"the shutdown took {total:.1f}s > terminationGracePeriodSeconds {self.grace}")
        print("\nshutdown timeline (measured):", flush=True)
        for at, what in timeline:
            print(f"  t={at:5.2f}s  {what}", flush=True)
        ok(f"shutdown took {total:.1f}s of the {self.grace}s grace period; both containers exited 0")

    def _refused(self) -> bool:
        try:
            platica.request(POD_IP, self.service_target, "GET", "/", timeout=0.5)
            return False
        except ConnectionRefusedError:
            return True

    def cleanup(self) -> None:
        for proc in reversed(self.procs):
            stop(proc, timeout=5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True, help="kubectl kustomize output")
    parser.add_argument("--bridge", type=Path, required=True, help="the static flows-bridge binary")
    parser.add_argument("--app", type=Path, required=True, help="the app's static binary (Go reference client)")
    parser.add_argument("--dockerfile", type=Path, default=platica.ROOT / "deploy" / "Dockerfile")
    parser.add_argument("--app-dockerfile", type=Path, default=platica.ROOT / "clients" / "go" / "Dockerfile")
    parser.add_argument("--static-only", action="store_true", help="only compare the objects; run nothing")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="flows-bridge-pod."))
    os.chmod(work, 0o755)
    pod = None
    try:
        pod = Pod(args, work)
        pod.check_objects()
        if args.static_only:
            return 0
        expect(os.geteuid() == 0, "pod.py runs containers: it needs root (in its own namespaces)")
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "addr", "add", f"{POD_IP}/32", "dev", "lo"], check=True)
        pod.check_image()
        pod.run_pod()
        return 0
    except (Failed, OSError, RuntimeError, subprocess.SubprocessError) as error:
        print(
            f"FAIL {type(error).__name__ + ': ' if not isinstance(error, Failed) else ''}{error}",
            file=sys.stderr,
            flush=True,
        )
        if pod:
            for log in pod.logs:
                print(f"---- {log.name} ----\n{tail(log)}", file=sys.stderr)
        return 1
    finally:
        if pod:
            pod.cleanup()
        subprocess.run(["umount", "-R", "-l", str(work)], stderr=subprocess.DEVNULL, check=False)
        for mount in sorted(Path("/proc/self/mounts").read_text().splitlines(), reverse=True):
            point = mount.split()[1]
            if point.startswith(str(work)):
                subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
