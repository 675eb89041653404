#!/usr/bin/env bash
# The bundle `make demo` runs in a microVM: busybox, printing what shows it is in a VM of its own.
# usage: scripts/make-demo-bundle.sh DIR
set -euo pipefail
dir=${1:?usage: make-demo-bundle.sh DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$dir/rootfs/bin/busybox" ] || bash "$here/tests/fixtures/make-busybox-rootfs.sh" "$dir/rootfs"
python3 - "$dir/config.json" <<'PY'
import json, sys
spec = {
    "ociVersion": "1.2.0",
    "process": {
        "terminal": False, "user": {"uid": 0, "gid": 0}, "cwd": "/",
        "args": ["sh", "-c",
                 "echo \"hello from a container in a cocoon microVM\"; "
                 "echo \"kernel: $(uname -sr), hostname: $(hostname), pid: $$\"; "
                 "echo \"memory limit: $(cat /sys/fs/cgroup/memory.max) bytes\"; "
                 "echo \"cpus: $(nproc)\""],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                         for k in ("bounding", "effective", "permitted", "ambient")},
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "demo",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "ro"]},
    ],
    "linux": {
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
        "resources": {"memory": {"limit": 134217728}},
    },
}
with open(sys.argv[1], "w") as f:
    json.dump(spec, f, indent=2)
PY
