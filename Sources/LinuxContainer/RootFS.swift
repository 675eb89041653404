import CSupport
import Cgroups
import OCI
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// Builds the container's root file system in its (new) mount namespace: rootfs bind, the spec's
/// mounts, /dev, then pivot_root, masked and read-only paths. Destinations inside the rootfs are
/// always resolved with SecurePath, so symlinks in the image cannot redirect a mount to the host.
struct RootFS {
    let config: InitConfig
    var rootfs: String { config.rootfs }
    var spec: Spec { config.spec }
    /// Inside a user namespace device nodes cannot be made; host ones are bind-mounted instead.
    var inUserNamespace: Bool { config.newUserNamespace }

    func check(_ step: @autoclosure () -> String, _ r: Int32) throws(LinuxContainerError) {
        try InitProcess.check(step(), r)
    }

    /// Everything up to pivot_root: hooks run between this and `finish`.
    /// `inCgroup` is called before the first step that must happen inside the container's cgroup
    /// (a cgroup mount, device nodes): the runtime moves init there while these mounts are made.
    func mountAll(inCgroup: () throws(LinuxContainerError) -> Void) throws(LinuxContainerError) {
        // Nothing done here may propagate back to the host's mount namespace.
        let propagation = spec.linux?.rootfsPropagation.flatMap { MountOptions.propagationFlags[$0] } ?? UInt(MS_SLAVE | MS_REC)
        try check("make / \(spec.linux?.rootfsPropagation ?? "rslave")", mount(nil, "/", nil, propagation, nil))
        // pivot_root needs the new root to be a mount point.
        try check("bind rootfs \(rootfs)", mount(rootfs, rootfs, nil, UInt(MS_BIND | MS_REC), nil))
        for (i, m) in (spec.mounts ?? []).enumerated() {
            if m.type == "cgroup" || m.type == "cgroup2" { try inCgroup() }
            try mountEntry(m, index: i)
        }
        try inCgroup()
        if (spec.mounts ?? []).contains(where: { $0.destination == "/dev" }) {
            try createDefaultDevices()
        }
        for d in spec.linux?.devices ?? [] { try createDevice(d) }
    }

    /// pivot_root. Sysctls are written after this, while /proc/sys is still writable.
    func finish() throws(LinuxContainerError) {
        try pivot()
    }

    /// Masked and read-only paths, read-only root: the last steps, after the sysctls.
    func seal() throws(LinuxContainerError) {
        for path in spec.linux?.maskedPaths ?? [] { try mask(path) }
        for path in spec.linux?.readonlyPaths ?? [] { try makeReadOnly(path) }
        if spec.root?.readonly == true {
            try check("remount / read-only", mount(nil, "/", nil, UInt(MS_BIND | MS_REMOUNT | MS_RDONLY), nil))
        }
    }

    func mountEntry(_ m: OCI.Mount, index: Int) throws(LinuxContainerError) {
        let options = MountOptions(m.options ?? [])
        let destination = try SecurePath.join(root: rootfs, m.destination)
        var type = m.type ?? (options.isBind ? "bind" : "none")
        // Relative bind sources were made absolute (against the bundle) by the runtime.
        let source = m.source ?? type
        let step = "mounts[\(index)]: mount \(type) on \(m.destination)"
        try makeMountPoint(destination, bindSource: options.isBind ? source : nil, step: step)
        var flags = options.flags
        var data = options.dataString
        if type == "cgroup" {
            guard CgroupMode.detect() == .unified else {
                return try mountCgroupV1(destination: destination, flags: flags, step: step)
            }
            // cgroup v2 view of the container's own cgroup (the cgroup namespace makes it its root).
            type = "cgroup2"
            data = nil
        }
        if options.isBind { type = "bind" }
        var r = mount(source, destination, type, flags & ~UInt(MS_RDONLY | MS_REMOUNT) | (options.isBind ? 0 : flags & UInt(MS_RDONLY)), data)
        if r != 0 && errno == EPERM && (type == "sysfs" || type == "mqueue") {
            // Without its own network (sysfs) or IPC (mqueue) namespace the kernel refuses a fresh
            // instance: show the host's, read-only, as runc does.
            let hostPath = type == "sysfs" ? "/sys" : "/dev/mqueue"
            r = mount(hostPath, destination, nil, UInt(MS_BIND | MS_REC), nil)
            flags |= UInt(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
            if r == 0 {
                try check(step + " (read-only)", mount(nil, destination, nil, UInt(MS_BIND | MS_REMOUNT | MS_REC) | flags, nil))
            }
        }
        try check(step, r)
        if options.isBind && flags & ~UInt(MS_BIND | MS_REC) != 0 {
            // Bind mounts ignore most flags until remounted.
            try check(step + " (remount with its options)",
                      mount(nil, destination, nil, (flags & ~UInt(MS_REC)) | UInt(MS_BIND | MS_REMOUNT), nil))
        }
        for p in options.propagation {
            try check(step + " (propagation)", mount(nil, destination, nil, p, nil))
        }
    }

    /// A `cgroup` mount on a cgroup v1 host (legacy or hybrid), as runc makes it: a tmpfs holding one
    /// mount per hierarchy the container's cgroup is in, each showing that cgroup as its root, and a
    /// symlink per controller of a co-mounted hierarchy ("cpu" -> "cpu,cpuacct"). Hierarchies cocoon
    /// does not place containers in (name=systemd, net_cls, perf_event, hybrid's cgroup v2) would show
    /// the runtime's own cgroup, so they are left out.
    func mountCgroupV1(destination: String, flags: UInt, step: String) throws(LinuxContainerError) {
        let readOnly = flags & UInt(MS_RDONLY) != 0
        let base = flags & ~UInt(MS_RDONLY | MS_REMOUNT | MS_BIND | MS_REC)
        try check(step + " (tmpfs)", mount("tmpfs", destination, "tmpfs", base, "mode=755"))
        // In a cgroup namespace (unshared after init joined its cgroup) a new mount of the hierarchy is
        // rooted at the container's cgroup; without one, /proc/self/cgroup gives the full path and the
        // container's directory is bound instead.
        let inCgroupNamespace = spec.linux?.namespaces?.contains { $0.type == .cgroup } ?? false
        for hierarchy in CgroupHierarchy.current() where !hierarchy.isV2 && CgroupManager.placesContainers(in: hierarchy) {
            let name = String(hierarchy.mountPoint.split(separator: "/").last ?? "")
            guard !name.isEmpty, !name.hasPrefix(".") else { continue }
            let target = destination + "/" + name
            let what = "\(step): cgroup \(hierarchy.controllers) on \(name)"
            guard mkdir(target, 0o755) == 0 || errno == EEXIST else {
                throw LinuxContainerError(step: what, "mkdir: \(String(cString: strerror(errno)))")
            }
            if inCgroupNamespace {
                try check(what, mount("cgroup", target, "cgroup", base | (readOnly ? UInt(MS_RDONLY) : 0), hierarchy.mountData))
            } else {
                guard let directory = hierarchy.directory else {
                    throw LinuxContainerError(.failedPrecondition, step: what,
                        "the host's mount of \(hierarchy.mountPoint) does not reach the container's cgroup \(hierarchy.cgroup)")
                }
                try check(what + " (bind \(directory))", mount(directory, target, nil, UInt(MS_BIND), nil))
                try check(what + " (remount with its options)",
                          mount(nil, target, nil, base | UInt(MS_BIND | MS_REMOUNT) | (readOnly ? UInt(MS_RDONLY) : 0), nil))
            }
            for controller in name.split(separator: ",") where name.contains(",") {
                if symlink(name, destination + "/" + controller) != 0 && errno != EEXIST {
                    throw LinuxContainerError(step: what, "symlink \(controller): \(String(cString: strerror(errno)))")
                }
            }
        }
        if readOnly {
            try check(step + " (tmpfs read-only)", mount(nil, destination, nil, base | UInt(MS_REMOUNT | MS_RDONLY), "mode=755"))
        }
    }

    func makeMountPoint(_ path: String, bindSource: String?, step: String) throws(LinuxContainerError) {
        var st = stat()
        var wantFile = false
        if let bindSource {
            guard stat(bindSource, &st) == 0 else {
                throw LinuxContainerError(.notFound, step: step, "source \(bindSource): \(String(cString: strerror(errno)))")
            }
            wantFile = (st.st_mode & S_IFMT) != S_IFDIR
        }
        if lstat(path, &st) == 0 { return }
        let parent = String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
        do throws(SystemError) {
            try Files.makeDirectories(wantFile ? parent : path)
            if wantFile {
                let fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
                if fd < 0 { throw SystemError("create \(path)") }
                close(fd)
            }
        } catch {
            throw LinuxContainerError(step: step, "cannot create the mount point: \(error.message)")
        }
    }

    static let defaultDevices: [(String, UInt32, UInt32)] = [
        ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
    ]

    func createDefaultDevices() throws(LinuxContainerError) {
        let dev = try SecurePath.join(root: rootfs, "/dev")
        for (name, major, minor) in Self.defaultDevices {
            try createDevice(Device(type: "c", path: "/dev/\(name)", major: Int64(major), minor: Int64(minor), fileMode: 0o666))
        }
        let links = [("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"),
                     ("/proc/self/fd/2", "stderr"), ("pts/ptmx", "ptmx")]
        for (target, name) in links {
            if symlink(target, "\(dev)/\(name)") != 0 && errno != EEXIST {
                throw LinuxContainerError(step: "symlink /dev/\(name)", String(cString: strerror(errno)))
            }
        }
        if Files.exists("/proc/kcore") { _ = symlink("/proc/kcore", "\(dev)/core") }
    }

    func createDevice(_ d: Device) throws(LinuxContainerError) {
        let path = try SecurePath.join(root: rootfs, d.path)
        let step = "create device \(d.path)"
        unlink(path)
        do throws(SystemError) {
            try Files.makeDirectories(String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]))
        } catch {
            throw LinuxContainerError(step: step, error.message)
        }
        if inUserNamespace {
            // Bind the host's node onto an empty file instead.
            let fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
            if fd >= 0 { close(fd) }
            try check(step, mount(d.path, path, nil, UInt(MS_BIND), nil))
            return
        }
        let kind: UInt32 = switch d.type { case "b": UInt32(S_IFBLK); case "p": UInt32(S_IFIFO); default: UInt32(S_IFCHR) }
        let mode = kind | (d.fileMode ?? 0o666)
        try check(step, cocoon_mknod(path, mode, UInt32(d.major ?? 0), UInt32(d.minor ?? 0)))
        _ = chmod(path, mode_t(d.fileMode ?? 0o666))  // mknod is subject to umask
        if d.uid != nil || d.gid != nil { _ = chown(path, d.uid ?? 0, d.gid ?? 0) }
    }

    func pivot() throws(LinuxContainerError) {
        if config.noPivot {
            try check("chdir \(rootfs)", chdir(rootfs))
            try check("move rootfs to /", mount(rootfs, "/", nil, UInt(MS_MOVE), nil))
            try check("chroot", chroot("."))
            try check("chdir /", chdir("/"))
            return
        }
        let oldRoot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC)
        let newRoot = open(rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC)
        defer {
            close(oldRoot)
            close(newRoot)
        }
        guard oldRoot >= 0, newRoot >= 0 else { throw LinuxContainerError(step: "open roots", String(cString: strerror(errno))) }
        try check("fchdir rootfs", fchdir(newRoot))
        // pivot_root(".", ".") stacks the old root on top of the new one; then it is detached.
        try check("pivot_root \(rootfs)", cocoon_pivot_root(".", "."))
        try check("fchdir old root", fchdir(oldRoot))
        try check("make old root rslave", mount(nil, ".", nil, UInt(MS_SLAVE | MS_REC), nil))
        try check("detach old root", umount2(".", Int32(MNT_DETACH)))
        try check("chdir /", chdir("/"))
    }

    func mask(_ path: String) throws(LinuxContainerError) {
        var st = stat()
        guard stat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            try check("mask \(path)", mount("tmpfs", path, "tmpfs", UInt(MS_RDONLY), nil))
        } else {
            try check("mask \(path)", mount("/dev/null", path, nil, UInt(MS_BIND), nil))
        }
    }

    func makeReadOnly(_ path: String) throws(LinuxContainerError) {
        guard Files.exists(path) else { return }
        try check("bind \(path) for read-only", mount(path, path, nil, UInt(MS_BIND | MS_REC), nil))
        try check("remount \(path) read-only",
                  mount(nil, path, nil, UInt(MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC), nil))
    }
}
