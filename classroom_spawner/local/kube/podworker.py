"""One pod's life on the node: scheduling, sandbox, init containers, main
containers, and teardown. Started by the :class:`~.kubelet.Kubelet` for every
new pod; reports through pod status and events as a kubelet would.

Phases: Pending (unscheduled, waiting for volumes, pulling, initialising) ->
Running (all main containers started at least once) -> Succeeded / Failed
(every main container finished and will not be restarted; or an init
container failed with ``restartPolicy: Never``). Container states are
``waiting`` (ContainerCreating, PodInitializing, ErrImagePull,
ImagePullBackOff, CreateContainerConfigError, CrashLoopBackOff),
``running`` and ``terminated`` (Completed, Error, StartError), with
``lastState`` and ``restartCount`` across restarts.
"""

import asyncio
import logging
import os
import shutil
import sys
from urllib.parse import urlparse

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from . import containers as ctr
from . import mountns
from .events import NORMAL, WARNING
from .images import NeverPullError, PullError, image_id
from .lightserver import LightServer
from .resources import RESOURCES
from .timeutil import rfc3339
from .volumes import MountError, PathMap, PodVolumes

log = logging.getLogger(__name__)

PODS = RESOURCES["pods"]
PVCS = RESOURCES["persistentvolumeclaims"]
# what kube-scheduler v1.36.3 appends to its FailedScheduling message here (its
# preemption step's result), seen against the real control plane (docs/realkube.md)
PREEMPTION = "not found"


class _Container:
    """Book-keeping for one container of the pod."""

    def __init__(self, spec, init):
        self.spec = spec
        self.name = spec["name"]
        self.init = init
        self.state = {
            "waiting": {"reason": "PodInitializing" if not init else "PodInitializing"}
        }
        self.last_state = {}
        self.restart_count = 0
        self.ready = False
        self.started = False
        self.ever_started = False
        self.final = False  # terminated and will not restart
        self.container_id = None
        self.process = None
        self.probe_task = None
        self.image = spec.get("image", "")

    @property
    def field_path(self):
        return f"spec.{'initContainers' if self.init else 'containers'}{{{self.name}}}"

    def status(self):
        st = {
            "name": self.name,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "image": self.image,
            "imageID": image_id(self.image) if self.ever_started else "",
            "started": self.started,
        }
        if self.container_id:
            st["containerID"] = self.container_id
        return st


class PodWorker:
    def __init__(self, kubelet, pod):
        self.k = kubelet
        meta = pod["metadata"]
        self.uid = meta["uid"]
        self.namespace = meta["namespace"]
        self.name = meta["name"]
        self.pod = pod
        self.pod_dir = os.path.join(
            kubelet.state_dir, "pods", f"{self.namespace}_{self.name}_{self.uid}"
        )
        spec = pod.get("spec") or {}
        self.init_containers = [
            _Container(c, True) for c in spec.get("initContainers") or []
        ]
        self.main_containers = [
            _Container(c, False) for c in spec.get("containers") or []
        ]
        for c in self.main_containers:
            c.state = {
                "waiting": {
                    "reason": (
                        "PodInitializing"
                        if self.init_containers
                        else "ContainerCreating"
                    )
                }
            }
        self.ip = None
        self.volumes = None
        self.init_failed = False
        self.initialized = not self.init_containers
        self.conditions = {}
        self.start_time = None
        self.scheduled = bool(spec.get("nodeName"))
        self._kick = asyncio.Event()
        self.stop_requested = asyncio.Event()
        self.grace = None
        self.force_deleted = False
        self.task = None
        self.read_only_warned = False

    @property
    def restart_policy(self):
        return (self.pod.get("spec") or {}).get("restartPolicy", "Always")

    @property
    def ref(self):
        return f"{self.namespace}/{self.name}"

    # ---- wiring ----

    def start(self):
        if self.task is None:
            self.task = asyncio.ensure_future(self.run())
        return self.task

    def kick(self):
        self._kick.set()

    def request_stop(self, grace, force=False):
        if force:
            self.force_deleted = True
        if self.grace is None or grace < self.grace:
            self.grace = grace
        self.stop_requested.set()

    def update_pod(self, pod):
        self.pod = pod
        self.kick()

    async def _wait_kick(self, timeout):
        self._kick.clear()
        try:
            await asyncio.wait_for(self._kick.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def _event(self, type_, reason, message, container=None, component="kubelet"):
        self.k.recorder.record(
            self.pod,
            type_,
            reason,
            message,
            component,
            container.field_path if container else None,
        )

    # ---- status ----

    def _condition(self, type_, status, reason=None, message=None):
        old = self.conditions.get(type_)
        if old and old["status"] == status and old.get("reason") == reason:
            return
        cond = {
            "type": type_,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": rfc3339(),
        }
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        self.conditions[type_] = cond

    def _phase(self):
        if self.init_failed:
            return "Failed"
        if not self.scheduled or not self.initialized:
            return "Pending"
        if not all(c.ever_started or c.final for c in self.main_containers):
            return "Pending"
        if all(c.final for c in self.main_containers):
            codes = [
                c.state.get("terminated", {}).get("exitCode", 1)
                for c in self.main_containers
            ]
            return "Succeeded" if all(code == 0 for code in codes) else "Failed"
        return "Running"

    def _readiness_conditions(self):
        waiting_init = [
            c.name
            for c in self.init_containers
            if "terminated" not in c.state or c.state["terminated"].get("exitCode") != 0
        ]
        if self.init_containers:
            if self.initialized:
                self._condition("Initialized", "True")
            else:
                self._condition(
                    "Initialized",
                    "False",
                    "ContainersNotInitialized",
                    f"containers with incomplete status: [{' '.join(waiting_init)}]",
                )
        else:
            self._condition("Initialized", "True")
        not_ready = [c.name for c in self.main_containers if not c.ready]
        phase = self._phase()
        if not not_ready:
            self._condition("ContainersReady", "True")
            self._condition("Ready", "True")
        else:
            reason = (
                "PodCompleted"
                if phase in ("Succeeded", "Failed")
                else "ContainersNotReady"
            )
            msg = (
                None
                if reason == "PodCompleted"
                else f"containers with unready status: [{' '.join(not_ready)}]"
            )
            self._condition("ContainersReady", "False", reason, msg)
            self._condition("Ready", "False", reason, msg)

    def push_status(self):
        """Write the pod's status as the kubelet sees it."""
        if self.force_deleted:
            return
        if self.scheduled:
            self._readiness_conditions()
        phase = self._phase()
        order = [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ]

        def apply(pod):
            if pod["metadata"].get("uid") != self.uid:
                return False
            status = pod.setdefault("status", {})
            status["phase"] = phase
            status["conditions"] = [
                self.conditions[t] for t in order if t in self.conditions
            ]
            if self.scheduled:
                status["hostIP"] = "127.0.0.1"
                status["hostIPs"] = [{"ip": "127.0.0.1"}]
                status["startTime"] = self.start_time
                status["podIP"] = self.ip
                status["podIPs"] = [{"ip": self.ip}] if self.ip else []
                if self.init_containers:
                    status["initContainerStatuses"] = [
                        c.status() for c in self.init_containers
                    ]
                status["containerStatuses"] = [c.status() for c in self.main_containers]
            if status.get("podIP") is None:
                status.pop("podIP", None)
            return None

        self.pod = (
            self.k.registry.mutate(PODS, self.namespace, self.name, apply) or self.pod
        )

    # ---- lifecycle ----

    async def run(self):
        lifecycle = asyncio.ensure_future(self._lifecycle())
        stopper = asyncio.ensure_future(self.stop_requested.wait())
        try:
            await asyncio.wait(
                {lifecycle, stopper}, return_when=asyncio.FIRST_COMPLETED
            )
            if not self.stop_requested.is_set():
                await stopper
        finally:
            lifecycle.cancel()
            stopper.cancel()
            await asyncio.gather(lifecycle, stopper, return_exceptions=True)
            try:
                await self._teardown()
            except Exception:
                log.exception("tearing down pod %s failed", self.ref)
            self.k._worker_done(self)

    async def _lifecycle(self):
        try:
            await self._schedule()
            await self._sandbox()
            if not await self._run_init_containers():
                return
            await asyncio.gather(*(self._run_main(c) for c in self.main_containers))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s: kubelet error", self.ref)

    async def _schedule(self):
        component = (self.pod.get("spec") or {}).get(
            "schedulerName"
        ) or "default-scheduler"
        if self.scheduled:
            # bound by a scheduler (the real one, or a manifest with nodeName)
            self.start_time = self.start_time or rfc3339()
            self._condition("PodScheduled", "True")
            return
        last = None
        while True:
            problem = self._unschedulable()
            if problem is None:
                break
            if problem != last:
                self._condition("PodScheduled", "False", "Unschedulable", problem)
                self.push_status()
                self._event(WARNING, "FailedScheduling", problem, component=component)
                last = problem
            await self._wait_kick(5.0)
        node = self.k.config.node_name

        def bind(pod):
            pod["spec"]["nodeName"] = node

        self.pod = (
            self.k.registry.mutate(PODS, self.namespace, self.name, bind) or self.pod
        )
        self.scheduled = True
        self.start_time = rfc3339()
        self._condition("PodScheduled", "True")
        self.push_status()
        self._event(
            NORMAL,
            "Scheduled",
            f"Successfully assigned {self.ref} to {node}",
            component=component,
        )

    def _unschedulable(self):
        for vol in (self.pod.get("spec") or {}).get("volumes") or []:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                continue
            pvc = self.k.registry.store.peek(PVCS, self.namespace, claim)
            if pvc is None:
                return f'0/1 nodes are available: persistentvolumeclaim "{claim}" not found. {PREEMPTION}'
            if pvc["metadata"].get("deletionTimestamp"):
                return f'0/1 nodes are available: persistentvolumeclaim "{claim}" is being deleted. {PREEMPTION}'
            if (pvc.get("status") or {}).get("phase") != "Bound":
                return (
                    "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."
                    f" {PREEMPTION}"
                )
        return None

    async def _sandbox(self):
        os.makedirs(os.path.join(self.pod_dir, "rootfs"), exist_ok=True)
        self.volumes = PodVolumes(
            self.k.registry,
            self.pod,
            self.pod_dir,
            self.k.volumes_dir,
            os.path.join(self.k.state_dir, "hostpath"),
            os.path.join(self.k.state_dir, "nfs"),
        )
        delay = 1.0
        last = None
        while True:
            try:
                self.volumes.pod = self.pod
                self.volumes.setup()
                break
            except MountError as e:
                vol = next(
                    (
                        v["name"]
                        for v in self.pod["spec"].get("volumes") or []
                        if v["name"] not in self.volumes.host_paths
                    ),
                    "?",
                )
                msg = f'MountVolume.SetUp failed for volume "{vol}" : {e}'
                if msg != last:
                    self._event(WARNING, "FailedMount", msg)
                    last = msg
                await self._wait_kick(delay)
                delay = min(delay * 2, 30.0)
        self.ip = self.k.ip_pool.allocate()
        self._condition("PodReadyToStartContainers", "True")
        self.push_status()

    async def _run_init_containers(self):
        for c in self.init_containers:
            while True:
                code = await self._run_once(c)
                if code == 0:
                    c.final = True
                    break
                if self.restart_policy == "Never":
                    c.final = True
                    self.init_failed = True
                    self.push_status()
                    return False
                await self._crash_backoff(c)
        self.initialized = True
        for c in self.main_containers:
            c.state = {"waiting": {"reason": "ContainerCreating"}}
        self.push_status()
        return True

    async def _run_main(self, c):
        while True:
            code = await self._run_once(c)
            policy = self.restart_policy
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                c.final = True
                self.push_status()
                return
            await self._crash_backoff(c)

    async def _crash_backoff(self, c):
        c.restart_count += 1
        delay = min(
            self.k.config.backoff_base * 2 ** (c.restart_count - 1),
            self.k.config.backoff_max,
        )
        c.last_state = {"terminated": c.state.get("terminated", {})}
        c.state = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {int(delay)}s restarting failed container={c.name}"
                f" pod={self.name}_{self.namespace}({self.uid})",
            }
        }
        c.ready = False
        c.started = False
        self.push_status()
        self._event(
            WARNING,
            "BackOff",
            f"Back-off restarting failed container {c.name} in pod {self.name}_{self.namespace}({self.uid})",
            c,
        )
        await asyncio.sleep(delay)

    async def _pull(self, c):
        policy = c.spec.get("imagePullPolicy", "IfNotPresent")
        delay = self.k.config.backoff_base
        while True:
            images = self.k.images
            if (
                policy != "Always"
                and c.image in images.present
                and c.image not in self.k.faults.faults.fail_images
            ):
                self._event(
                    NORMAL,
                    "Pulled",
                    f'Container image "{c.image}" already present on machine',
                    c,
                )
                return
            self._event(NORMAL, "Pulling", f'Pulling image "{c.image}"', c)
            try:
                result = await images.ensure(c.image, policy)
            except NeverPullError:
                msg = f'Container image "{c.image}" is not present with pull policy of Never'
                c.state = {"waiting": {"reason": "ErrImageNeverPull", "message": msg}}
                self.push_status()
                self._event(WARNING, "ErrImageNeverPull", msg, c)
                await asyncio.sleep(delay)
                continue
            except PullError as e:
                self._event(
                    WARNING, "Failed", f'Failed to pull image "{c.image}": {e}', c
                )
                self._event(WARNING, "Failed", "Error: ErrImagePull", c)
                c.state = {"waiting": {"reason": "ErrImagePull", "message": str(e)}}
                self.push_status()
                await asyncio.sleep(min(1.0, delay))
                c.state = {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": f'Back-off pulling image "{c.image}": ErrImagePull: {e}',
                    }
                }
                self.push_status()
                self._event(NORMAL, "BackOff", f'Back-off pulling image "{c.image}"', c)
                self._event(WARNING, "Failed", "Error: ImagePullBackOff", c)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.k.config.backoff_max)
                continue
            if result is None:
                self._event(
                    NORMAL,
                    "Pulled",
                    f'Container image "{c.image}" already present on machine',
                    c,
                )
            else:
                pulled, total = result
                self._event(
                    NORMAL,
                    "Pulled",
                    f'Successfully pulled image "{c.image}" in {pulled:.3f}s ({total:.3f}s'
                    " including waiting). Image size: 0 bytes.",
                    c,
                )
            return

    def _prepare(self, c, namespaces):
        """argv, env and cwd for container ``c`` on the host (raises ConfigError),
        and its bind mounts (when ``namespaces``: see :mod:`.mountns`)."""
        k = self.k
        spec = c.spec
        declared = ctr.resolve_env(k.registry, self.pod, spec, k.config.node_name)
        command = spec.get("command")
        if command is None:
            command = list(k.config.image_entrypoints.get(c.image, []))
        argv = [
            ctr.expand(a, declared)
            for a in list(command) + list(spec.get("args") or [])
        ]
        if not argv:
            raise ctr.ConfigError("no command specified")
        light = self._is_light(c, argv)
        mounts = [
            (
                m["mountPath"],
                self._mount_host_path(m, declared),
                bool(m.get("readOnly")) or m["name"] in self.volumes.read_only,
            )
            for m in spec.get("volumeMounts") or []
        ]
        cdir = os.path.join(self.pod_dir, "containers", c.name)
        os.makedirs(cdir, exist_ok=True)
        try:
            mounts, binds = mountns.plan(
                mounts, os.path.join(cdir, "mnt"), namespaces and not light
            )
        except mountns.MountPlanError as e:
            raise ctr.ConfigError(str(e))
        term_path = spec.get("terminationMessagePath", "/dev/termination-log")
        term_host = os.path.join(cdir, "termination-log")
        open(term_host, "wb").close()
        mounts.append((term_path, term_host))
        pmap = PathMap(mounts, os.path.join(self.pod_dir, "rootfs"))
        env = {"PATH": ":".join(k.config.bin_dirs + [ctr.DEFAULT_PATH])}
        env["HOSTNAME"] = self.name
        env["LANG"] = os.environ.get("LANG", "C.UTF-8")
        env["HOME"] = pmap.host_path(k.config.home)
        env.update(k.config.extra_env)
        for key, value in declared.items():
            value = pmap.rewrite(ctr.any_addr_to(value, self.ip))
            if key == "PATH":
                value = ":".join(k.config.bin_dirs + [value])
            env[key] = value
        if os.geteuid() == 0 and not (
            k.config.run_as_user and self._run_as(c)[0] is not None
        ):
            # images run their servers as a non-root user; here everything runs as
            # the stand-in's user, so tell Jupyter that root is fine
            env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
                p
                for p in (k.allow_root_config_dir(), env.get("JUPYTER_CONFIG_PATH"))
                if p
            )
        marker = f"{k.standin_id}/{self.uid}/{c.name}/{c.restart_count}"
        env[ctr.STANDIN_ENV] = k.standin_id
        env[ctr.CONTAINER_ENV] = marker
        argv = [pmap.rewrite(ctr.any_addr_to(a, self.ip)) for a in argv]
        workdir = spec.get("workingDir")
        cwd = pmap.host_path(workdir) if workdir else env["HOME"]
        os.makedirs(env["HOME"], exist_ok=True)
        os.makedirs(cwd, exist_ok=True)
        return argv, env, cwd, cdir, term_host, marker, binds, light

    def _mount_host_path(self, mount, env):
        base = self.volumes.host_paths[mount["name"]]
        sub = mount.get("subPath") or ""
        if mount.get("subPathExpr"):
            sub = ctr.expand(mount["subPathExpr"], env)
        if not sub:
            return base
        path = os.path.normpath(os.path.join(base, sub))
        os.makedirs(path, exist_ok=True)
        return path

    def _run_as(self, c):
        """(runAsUser, runAsGroup) from the pod's and the container's securityContext."""
        sc = {
            **((self.pod.get("spec") or {}).get("securityContext") or {}),
            **(c.spec.get("securityContext") or {}),
        }
        return sc.get("runAsUser"), sc.get("runAsGroup")

    def _is_light(self, c, argv):
        cfg = self.k.config
        if c.init or cfg.singleuser != "light":
            return False
        return cfg.light_all or os.path.basename(argv[0]) in cfg.light_commands

    def _light_process(self, c, env):
        url = env.get("JUPYTERHUB_SERVICE_URL")
        port = None
        if url:
            port = urlparse(url).port
        if port is None:
            ports = c.spec.get("ports") or []
            port = ports[0]["containerPort"] if ports else 8888
        base = env.get("JUPYTERHUB_SERVICE_PREFIX", "/")
        return ctr.LightProcess(LightServer(self.ip, port, base, self.ref))

    async def _run_once(self, c):
        """Pull, configure, start and wait for one run of container ``c``; its exit code."""
        await self._pull(c)
        namespaces, why = await self.k.mount_support()
        delay = 1.0
        while True:
            try:
                prepared = self._prepare(c, namespaces)
                argv, env, cwd, cdir, term_host, marker, binds, light = prepared
                break
            except ctr.ConfigError as e:
                c.state = {
                    "waiting": {
                        "reason": "CreateContainerConfigError",
                        "message": str(e),
                    }
                }
                self.push_status()
                self._event(WARNING, "Failed", f"Error: {e}", c)
                await self._wait_kick(delay)
                delay = min(delay * 2, self.k.config.backoff_max)
        log_path = os.path.join(cdir, f"{c.restart_count}.log")
        if c.init and c.name in self.k.faults.faults.fail_init_containers:
            argv = [
                sys.executable,
                "-c",
                "import sys; print('injected failure'); sys.exit(1)",
            ]
        if light:
            proc = self._light_process(c, env)
        else:
            user = group = None
            if self.k.config.run_as_user and os.geteuid() == 0:
                user, group = self._run_as(c)
            if not namespaces:
                self._warn_read_only(c, why)
            prefix = ()
            if binds:
                # the wrapper mounts as root, then switches user itself
                prefix = mountns.wrapper(binds, cwd, user, group)
                user = group = None
            proc = ctr.RealProcess(
                argv, env, cwd, log_path, marker, user=user, group=group, prefix=prefix
            )
        self._event(NORMAL, "Created", f"Created container: {c.name}", c)
        if self.k.faults.faults.container_start_delay:
            await asyncio.sleep(self.k.faults.faults.container_start_delay)
        started_at = rfc3339()
        try:
            c.process = proc
            proc.start()
        except ctr.StartError as e:
            c.process = None
            c.state = {
                "terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": str(e),
                    "startedAt": "1970-01-01T00:00:00Z",
                    "finishedAt": rfc3339(),
                }
            }
            c.ever_started = True
            self.push_status()
            self._event(WARNING, "Failed", f"Error: {e}", c)
            return 128
        c.container_id = f"standin://{marker}"
        c.ever_started = True
        c.started = True
        c.state = {"running": {"startedAt": started_at}}
        probe = c.spec.get("readinessProbe")
        c.ready = probe is None and not c.init
        self.push_status()
        self._event(NORMAL, "Started", f"Started container {c.name}", c)
        if probe and not c.init:
            c.probe_task = asyncio.ensure_future(self._probe_loop(c, probe))
        hook = ((c.spec.get("lifecycle") or {}).get("postStart") or {}).get("exec")
        if hook:
            ok, out = await self._exec_hook(c, hook, env, cwd)
            if not ok:
                self._event(
                    WARNING,
                    "FailedPostStartHook",
                    f"PostStartHook failed: {out}",
                    c,
                )
                await proc.stop(0)
        try:
            code = await proc.wait()
        finally:
            if c.probe_task:
                c.probe_task.cancel()
                c.probe_task = None
        if code is None:
            code = 137
        if code < 0:
            code = 128 - code
        c.state = {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": started_at,
                "finishedAt": rfc3339(),
                "containerID": c.container_id,
            }
        }
        message = self._termination_message(c, term_host, log_path, code)
        if message:
            c.state["terminated"]["message"] = message
        c.ready = False
        c.started = False
        c.process = None
        self.push_status()
        return code

    def _warn_read_only(self, c, why):
        """Once per pod: say that its readOnly mounts are writable."""
        if self.read_only_warned:
            return
        volumes = self.volumes.read_only
        names = sorted(
            m["name"]
            for m in c.spec.get("volumeMounts") or []
            if m.get("readOnly") or m["name"] in volumes
        )
        if not names:
            return
        self.read_only_warned = True
        msg = (
            f"readOnly volume mounts are writable in this pod (container {c.name}:"
            f" {', '.join(names)}): {why}"
        )
        log.warning("pod %s: %s", self.ref, msg)
        self._event(WARNING, "ReadOnlyNotEnforced", msg, c)

    def _termination_message(self, c, term_host, log_path, code):
        try:
            with open(term_host, "rb") as f:
                data = f.read(4096)
        except OSError:
            data = b""
        if (
            not data
            and code != 0
            and c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        ):
            try:
                with open(log_path, "rb") as f:
                    lines = f.read().splitlines()[-80:]
                data = b"\n".join(lines)[-2048:]
            except OSError:
                data = b""
        return data.decode(errors="replace")

    async def _exec_hook(self, c, hook, env, cwd):
        argv = list(hook.get("command") or [])
        if not argv:
            return True, ""
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                cwd=cwd,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            out, _ = await proc.communicate()
        except OSError as e:
            return False, str(e)
        return proc.returncode == 0, out.decode(errors="replace")[-1024:]

    async def _probe_loop(self, c, probe):
        await asyncio.sleep(probe.get("initialDelaySeconds", 0))
        successes = failures = 0
        while True:
            ok, why = await self._probe_once(probe)
            if ok:
                successes, failures = successes + 1, 0
                if not c.ready and successes >= probe.get("successThreshold", 1):
                    c.ready = True
                    self.push_status()
            else:
                successes, failures = 0, failures + 1
                self._event(WARNING, "Unhealthy", f"Readiness probe failed: {why}", c)
                if c.ready and failures >= probe.get("failureThreshold", 3):
                    c.ready = False
                    self.push_status()
            await asyncio.sleep(probe.get("periodSeconds", 10))

    async def _probe_once(self, probe):
        timeout = probe.get("timeoutSeconds", 1)
        if "httpGet" in probe:
            h = probe["httpGet"]
            port = h.get("port")
            url = f"http://{h.get('host') or self.ip}:{port}{h.get('path', '/')}"
            try:
                resp = await AsyncHTTPClient().fetch(
                    HTTPRequest(url, request_timeout=timeout, follow_redirects=False),
                    raise_error=False,
                )
            except Exception as e:
                return False, f'Get "{url}": {e}'
            if 200 <= resp.code < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {resp.code}"
        if "tcpSocket" in probe:
            port = probe["tcpSocket"].get("port")
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        probe["tcpSocket"].get("host") or self.ip, port
                    ),
                    timeout,
                )
                writer.close()
                return True, ""
            except (OSError, asyncio.TimeoutError) as e:
                return False, f"dial tcp {self.ip}:{port}: {e}"
        return True, ""

    # ---- teardown ----

    async def _teardown(self):
        grace = self.grace if self.grace is not None else 0
        running = [
            c
            for c in self.init_containers + self.main_containers
            if c.process is not None
        ]
        for c in running:
            if not self.force_deleted:
                self._event(NORMAL, "Killing", f"Stopping container {c.name}", c)
        if grace > 0:
            for c in running:
                hook = ((c.spec.get("lifecycle") or {}).get("preStop") or {}).get(
                    "exec"
                )
                if hook and c.process and c.process.running:
                    try:
                        await asyncio.wait_for(
                            self._exec_hook(c, hook, os.environ.copy(), self.pod_dir),
                            grace,
                        )
                    except asyncio.TimeoutError:
                        pass
        await asyncio.gather(
            *(c.process.stop(grace) for c in running if c.process is not None),
            return_exceptions=True,
        )
        for c in running:
            code = c.process.returncode if c.process else 137
            c.state = {
                "terminated": {
                    "exitCode": code if code is not None and code >= 0 else 137,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": (c.state.get("running") or {}).get(
                        "startedAt", rfc3339()
                    ),
                    "finishedAt": rfc3339(),
                    "containerID": c.container_id,
                }
            }
            c.ready = c.started = False
            c.final = True
            c.process = None
        if running and self.scheduled:
            self.push_status()
        if self.ip:
            self.k.ip_pool.release(self.ip)
            self.ip = None
        await asyncio.get_running_loop().run_in_executor(
            None, shutil.rmtree, self.pod_dir, True
        )
        if not self.force_deleted:
            current = self.k.registry.store.peek(PODS, self.namespace, self.name)
            if current is not None and current["metadata"].get("uid") == self.uid:
                self.k.registry.finish_delete(PODS, self.namespace, self.name)
        self.k.recorder.forget(self.uid)
